"""Services that die with their parent: a supervisor killed by SIGKILL leaves nothing running.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is kept across ``exec`` but not
across ``fork``, so it is set in each process that must not outlive its parent: the
services ``sandbar up`` starts (through ``python -m sandbar.lifetime PARENT ARGV...``,
which sets it and execs the service: no ``preexec_fn`` in a threaded supervisor), the
gunicorn workers (``post_fork``) and the Crossbar router worker (its in-process component).
A parent that died before the signal was set is noticed by comparing ``getppid()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None, signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``signum`` to this process when its parent ends.

    ``parent``: the pid the parent had; if it is already gone, ``signum`` is sent now.
    Returns False where the kernel has no such signal (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)
    return True


def wrap(argv: list[str]) -> list[str]:
    """``argv`` run as a child of this process that dies with it."""
    return [sys.executable, "-m", "sandbar.lifetime", str(os.getpid()), *argv]


def main() -> None:
    """``python -m sandbar.lifetime PARENT_PID PROGRAM [ARGS...]``."""
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        raise SystemExit("usage: python -m sandbar.lifetime PARENT_PID PROGRAM [ARGS...]")
    die_with_parent(int(sys.argv[1]))
    program = sys.argv[2:]
    try:
        os.execv(program[0], program)
    except OSError as exc:
        raise SystemExit(f"cannot run {program[0]}: {exc.strerror}") from None


if __name__ == "__main__":
    main()
