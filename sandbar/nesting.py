"""How deep a message nests, found without decoding it.

Decoders recurse once (the pure-Python JSON scanner Autobahn uses: twice) per level of
nesting, so a small message of brackets, ``[[[[...]]]]``, reaches the recursion limit or
the C stack long before any size cap. Checking the depth first keeps every decoder far
from both, and costs almost nothing for ordinary messages: a document with no more opening
brackets than the limit cannot nest deeper than it, and two ``bytes.count`` calls say so.
"""

from __future__ import annotations

import re
from itertools import accumulate, count
from operator import sub
from typing import Any

#: deepest nesting accepted anywhere a message from outside is decoded
DEFAULT_MAX_DEPTH = 64

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENS_AS_TWO = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")
_CONTAINERS = (list, tuple, dict)


def json_too_deep(document: bytes | str, limit: int = DEFAULT_MAX_DEPTH) -> bool:
    """Does this JSON text nest arrays/objects more than ``limit`` deep? (Brackets inside
    strings do not count; text that is not JSON may give either answer, and fails later.)"""
    data = document.encode() if isinstance(document, str) else document
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    if not brackets:
        return False
    # each opening bracket adds one level, each closing one takes one away: with opens
    # as 2 and closes as 0, the running sum minus the count so far is the depth there
    levels = map(sub, accumulate(brackets.translate(_OPENS_AS_TWO)), count(1))
    return max(levels) > limit


def value_too_deep(value: Any, limit: int = DEFAULT_MAX_DEPTH) -> bool:
    """Does this decoded value (lists, tuples, dicts) nest more than ``limit`` deep?
    Level by level, so it never recurses however deep the value is."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        inner: list[Any] = []
        for item in level:
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            inner.extend(child for child in children if isinstance(child, _CONTAINERS))
        level = inner
    return False
