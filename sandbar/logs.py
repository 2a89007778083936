"""One log format for every Sandbar process, so supervisor output lines up."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    """Configure stdlib logging once; ``SANDBAR_LOG_LEVEL`` overrides the default."""
    level = (level or os.environ.get("SANDBAR_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Autobahn logs every connection attempt at INFO; its warnings and errors still show.
    for noisy in ("autobahn", "txaio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
