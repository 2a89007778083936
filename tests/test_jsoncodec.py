"""The event path's JSON codec (sandbar/jsoncodec.py): orjson, with the standard library's
answers where senders rely on them."""

from __future__ import annotations

import json

import pytest

from bridge.envelope import Envelope, MalformedFrame
from sandbar import jsoncodec


def test_it_writes_what_the_standard_library_writes_for_ordinary_values() -> None:
    value = {"id": 1, "title": "Grüße ✓", "tags": ["a", None, True], "score": 1.5}
    assert (
        jsoncodec.dumps(value)
        == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert jsoncodec.loads(jsoncodec.dumps(value)) == value


def test_non_string_keys_and_integers_beyond_64_bits_are_written_as_json_would() -> None:
    assert jsoncodec.dumps({1: "a"}) == b'{"1":"a"}'
    assert jsoncodec.dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_what_json_cannot_hold_is_a_type_or_value_error() -> None:
    with pytest.raises(TypeError):
        jsoncodec.dumps({"when": object()})
    with pytest.raises((TypeError, ValueError)):
        jsoncodec.dumps({"s": "\ud800"})  # a lone surrogate is no UTF-8


@pytest.mark.parametrize("frame", [b'{"a": NaN}', b'{"s": "\\ud800"}', b"[1,]", b'"\xff"'])
def test_strict_decoding_refuses_what_is_not_json(frame: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsoncodec.loads(frame)


def test_the_bridge_refuses_a_frame_with_a_lone_surrogate_as_not_json() -> None:
    frame = b'{"v": 1, "name": "article.created", "payload": {"title": "\\udc80"}}'
    with pytest.raises(MalformedFrame) as refused:
        Envelope.from_bytes(frame)
    assert refused.value.reason == "not_json"
