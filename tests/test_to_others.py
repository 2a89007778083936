"""toOthers without a browser: the session proof, the bridge's check, the envelope field.
(In Chromium, end to end: tests/test_browser_recovery.py.)"""

from __future__ import annotations

from collections import Counter

from bridge.envelope import Envelope
from bridge.others import leave_out
from bridge.routes import Publication
from sandbar.session_proof import sign, verify

SECRET = "test-backend-secret-0123456789abcdef"


def publication(others: object) -> Publication:
    envelope = Envelope(name="article.created", payload={"id": 1}, others=others)  # type: ignore[arg-type]
    return Publication(envelope, "articles", {"retain": True})


def test_a_proof_names_one_session_of_one_user():
    proof = sign(SECRET, 42, "alice")
    assert len(proof) == 22 and verify(SECRET, 42, "alice", proof)
    assert not verify(SECRET, 42, "mallory", proof)  # another user cannot use it
    assert not verify(SECRET, 43, "alice", proof)  # nor for another session
    assert not verify("another-secret-0123456789abcdefghij", 42, "alice", proof)


def test_the_bridge_leaves_out_a_proven_session_only():
    ignored: Counter[str] = Counter()
    good = {"session": 42, "user": "alice", "proof": sign(SECRET, 42, "alice")}
    assert leave_out(publication(good), SECRET, ignored).options == {
        "retain": True,
        "exclude": [42],
    }
    forged = {**good, "user": "mallory"}  # alice's real proof on mallory's request
    assert leave_out(publication(forged), SECRET, ignored).options == {"retain": True}
    for bad in ({}, {"session": True, "user": "alice", "proof": "x"}, {**good, "proof": 5}):
        assert leave_out(publication(bad), SECRET, ignored).options == {"retain": True}
    assert ignored == Counter(not_the_users_session=1, malformed=3)
    assert leave_out(publication(None), SECRET, ignored).options == {"retain": True}


def test_others_travels_in_the_envelope():
    others = {"session": 7, "user": "bob", "proof": sign(SECRET, 7, "bob")}
    decoded = Envelope.from_bytes(Envelope(name="x", payload={}, others=others).to_bytes())
    assert decoded.others == others
    assert Envelope.from_bytes(b'{"name": "x", "others": [1]}').others == {}  # counted as malformed
    assert b"others" not in Envelope(name="x", payload={}).to_bytes()
