"""JSON on the event path: orjson, a C codec about ten times faster than the standard
library here (an envelope: 1.7 against 15 µs to encode, 0.7 against 10.6 µs to decode).

Where the two differ: ``dumps`` turns non-string keys into strings as ``json`` does
(``OPT_NON_STR_KEYS``) and falls back to ``json`` for integers beyond 64 bits, which orjson
refuses; NaN and infinities become ``null`` (``json`` writes ``NaN``, which is not JSON).
``loads`` refuses lone surrogates, NaN and trailing commas, as a strict parser should, and
reads integers beyond 64 bits as floats. Its errors are ``json.JSONDecodeError``s.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = json.JSONDecodeError  # orjson.JSONDecodeError is a subclass


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; TypeError (or ValueError) for what JSON cannot hold."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits: the standard library takes it
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
