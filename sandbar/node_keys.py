"""Crossbar node keys for edge nodes, and the core's list of the edges it trusts.

An edge's proxy workers join the core router with ``cryptosign-proxy``: they sign with their
node's Ed25519 key (``key.priv`` in the node's cbdir, Crossbar's own file format) and the
core accepts them only if the public key is listed for that node id
(``principals[<node id>].authorized_keys``). ``make_node_keys`` makes each edge's key once
(Crossbar's own writer, so the node reads it as its own) and copies the public half into a
``trusted`` folder as ``<node id>.pub``; the core renders its principals from that folder.
No key is ever in the repository or the image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sandbar.config import ConfigError
from sandbar.paths import private_dir

PRIVATE = "key.priv"
PUBLIC = "key.pub"
TRUSTED = "trusted"
#: a node id is a Crossbar id (checked by the node), a file name and a principal name
NODE_ID = re.compile(r"^[a-z][a-z0-9_]{2,63}$")
_PUBLIC_TAG = "public-key-ed25519"


def check_node_id(node_id: str) -> str:
    if not NODE_ID.match(node_id):
        raise ValueError(
            f"node id {node_id!r}: use a lower-case letter, then 2-63 lower-case letters, "
            "digits or '_' (Crossbar's rule for node ids), e.g. edge_a"
        )
    return node_id


def make_node_keys(folder: Path, node_ids: list[str]) -> dict[str, str]:
    """``folder/<id>/key.priv`` and ``key.pub`` for each node (kept if they exist), and
    ``folder/trusted/<id>.pub``; returns each node's public key (hex)."""
    keys = {}
    private_dir(folder / TRUSTED)
    for node_id in node_ids:
        try:
            check_node_id(node_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        keys[node_id] = node_key(folder / node_id, node_id)
        shutil.copyfile(folder / node_id / PUBLIC, folder / TRUSTED / f"{node_id}.pub")
    return keys


def node_key(cbdir: Path, node_id: str | None = None) -> str:
    """The public key (hex) of the node whose cbdir is ``cbdir``, its key pair made there
    first if it has none (a node reads ``key.priv``/``key.pub`` from its cbdir)."""
    _generate(private_dir(cbdir), node_id)
    return public_key(cbdir / PUBLIC)


_MAKE_KEY = "import sys; from crossbar.common.key import _maybe_generate_node_key as make; make(sys.argv[1])"


def _generate(node_dir: Path, node_id: str | None) -> None:
    """Crossbar's own key writer, in a child: importing crossbar picks Twisted for txaio,
    which this (asyncio) process may have picked already."""
    env = dict(os.environ)
    if node_id is not None:
        env["CROSSBAR_NODE_ID"] = node_id  # recorded in a new key as node-authid
    done = subprocess.run(
        [sys.executable, "-c", _MAKE_KEY, str(node_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ConfigError(f"{node_dir}: cannot make the node key: {done.stderr.strip()[-500:]}")


def public_key(path: Path) -> str:
    """The Ed25519 public key (hex) in a Crossbar ``key.pub`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read node public key ({exc.strerror})") from None
    for line in text.splitlines():
        tag, _, value = line.partition(":")
        if tag.strip() == _PUBLIC_TAG and re.fullmatch(r"[0-9a-f]{64}", value.strip()):
            return value.strip()
    raise ConfigError(
        f"{path}: no '{_PUBLIC_TAG}: <64 hex digits>' line; copy the edge's key.pub "
        "unchanged (sandbar node-keys writes it)"
    )


def trusted_keys(folder: Path) -> dict[str, str]:
    """Each trusted node's public key by node id, from ``folder/<node id>.pub``."""
    if not folder.is_dir():
        raise ConfigError(
            f"trusted keys {folder}: not a folder; make the edges' keys with "
            f"`sandbar node-keys DIR EDGE...` and point the core at DIR/{TRUSTED}"
        )
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        try:
            node_id = check_node_id(path.stem)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        keys[node_id] = public_key(path)
    if not keys:
        raise ConfigError(
            f"trusted keys {folder}: no <node id>.pub file, so no edge could join; make them "
            f"with `sandbar node-keys DIR EDGE...` (DIR/{TRUSTED} is this folder)"
        )
    return keys


def require_node_key(cbdir: Path) -> None:
    """An edge must start with its provisioned key: Crossbar would silently make a new one,
    which the core does not trust."""
    if not (cbdir / PRIVATE).is_file():
        raise ConfigError(
            f"edge node: no {PRIVATE} in {cbdir}; make it with `sandbar node-keys DIR "
            "<node id>` and run the edge with --run-dir DIR/<node id> (the core must list "
            "DIR/trusted/<node id>.pub)"
        )
