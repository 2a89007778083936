"""CURVE key files: how the bridge and every sender (the API, a worker, a cron job) get keys.

``sandbar up`` and ``sandbar curve-keys --init DIR`` write two files, mode 0600:

- ``bridge.keys``: the bridge's secret key and the public keys of the senders it admits;
- ``api.keys``: the bridge's public key and a sender's secret key, for the API and any
  other sender on the same machine (or make a pair per sender and list it in ``clients``).

A file is ``name = value`` lines; ``#`` starts a comment line. Keys are Z85 (40 characters).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bridge.curve import check_key, new_keypair
from sandbar.config import ConfigError
from sandbar.paths import RUN_DIR, private_dir

log = logging.getLogger("sandbar.bridge.keys")

BRIDGE_FILE, SENDER_FILE = "bridge.keys", "api.keys"
#: where ``sandbar up`` keeps its keys (``--run-dir``/curve)
DEFAULT_DIR = RUN_DIR / "curve"
#: a sender's key file, for processes that are not given one (``EventSender(keys=...)``)
SENDER_KEYS_VAR = "SANDBAR_SENDER_KEYS"
_HEADER = "# Sandbar ZeroMQ CURVE keys. SECRET: keep this file mode 0600 and never commit it.\n"


@dataclass(frozen=True)
class SenderKeys:
    """What a sender needs: the bridge's public key and its own secret key."""

    server_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class BridgeKeys:
    """What the bridge needs: its secret key and the public keys it admits."""

    secret_key: str = field(repr=False)
    clients: tuple[str, ...]


def read_key_file(path: Path) -> dict[str, str]:
    """The ``name = value`` pairs of a key file; ConfigError naming the file and the fix."""
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read CURVE key file {path} ({getattr(exc, 'strerror', None) or exc}); "
            "`sandbar up` makes one in its run dir, `sandbar curve-keys --init DIR` anywhere"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s holds secret keys but others may read it: chmod 600 %s", path, path)
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise ConfigError(f"{path}, line {number}: expected 'name = value'")
        values[name.strip()] = value.strip()
    return values


def _key(values: dict[str, str], name: str, path: Path) -> str:
    try:
        return check_key(values[name])
    except KeyError:
        raise ConfigError(
            f"{path}: no '{name}' line; remake it: `sandbar curve-keys --init DIR`"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: '{name}' is {exc}") from None


def load_sender_keys(path: str | Path) -> SenderKeys:
    path = Path(path)
    values = read_key_file(path)
    return SenderKeys(_key(values, "server_key", path), _key(values, "secret_key", path))


def load_bridge_keys(path: str | Path) -> BridgeKeys:
    path = Path(path)
    values = read_key_file(path)
    clients = tuple(values.get("clients", "").replace(",", " ").split())
    try:
        checked = tuple(check_key(key) for key in clients)
    except ValueError as exc:
        raise ConfigError(f"{path}: a 'clients' entry is {exc}") from None
    return BridgeKeys(_key(values, "secret_key", path), checked)


def _write(path: Path, lines: dict[str, str], what: str) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly readable by others)."""
    body = _HEADER + f"# {what}\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(body)


def ensure_stack_keys(directory: str | Path) -> tuple[Path, Path]:
    """``bridge.keys`` and ``api.keys`` in ``directory`` (0700), made if either is missing.

    Returns their paths. Existing files are kept, so senders given a copy keep working.
    """
    directory = Path(directory)
    bridge_file, sender_file = directory / BRIDGE_FILE, directory / SENDER_FILE
    if bridge_file.exists() and sender_file.exists():
        return bridge_file, sender_file
    private_dir(directory)
    for stale in (bridge_file, sender_file):
        stale.unlink(missing_ok=True)  # one without the other cannot be trusted to match
    bridge_public, bridge_secret = new_keypair()
    sender_public, sender_secret = new_keypair()
    _write(
        bridge_file,
        {"secret_key": bridge_secret, "clients": sender_public},
        "the bridge's secret key; 'clients' lists the public keys of admitted senders",
    )
    _write(
        sender_file,
        {"server_key": bridge_public, "secret_key": sender_secret},
        f"a sender's keys (the API's): EventSender(keys=...) or {SENDER_KEYS_VAR}=<this file>",
    )
    log.info("made CURVE keys for the bridge and its senders in %s", directory)
    return bridge_file, sender_file


def find_sender_keys(path: str | Path | None = None) -> SenderKeys | None:
    """A sender's keys: from ``path``, else ``$SANDBAR_SENDER_KEYS``, else the file
    ``sandbar up`` writes (``.sandbar/curve/api.keys``) if there is one; else None."""
    chosen = path or os.environ.get(SENDER_KEYS_VAR)
    if chosen:
        return load_sender_keys(chosen)
    default = DEFAULT_DIR / SENDER_FILE
    return load_sender_keys(default) if default.exists() else None
