"""The inspector's gate in the authorizer: only staff sessions reach ``inspect.*``."""

from __future__ import annotations

import asyncio

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.request import Registration
from autobahn.wamp.types import CallDetails

from topics.authorizer import Authorizer
from topics.examples import topics
from topics.inspector import NOT_STAFF, TAP_TOPIC, Inspector, staff_only
from topics.session import SessionInfo


def _details(role: str | None) -> CallDetails:
    registration = Registration(None, 1, "inspect.echo", None)
    return CallDetails(registration, caller=1, caller_authrole=role)


def _decide(role: str, uri: str, action: str, **options: str) -> tuple[bool, str | None]:
    authorizer = Authorizer(topics)
    session = SessionInfo(id=7, authid="ann", authrole=role, authmethod="ticket")
    decision = asyncio.run(authorizer.authorize(session, uri, action, dict(options)))
    return decision.allow, decision.reason


@pytest.mark.parametrize("role", ["anonymous", "user", "backend", "Staff", ""])
def test_only_staff_may_call_or_tap(role):
    assert _decide(role, "inspect.sessions", "call") == (False, NOT_STAFF)
    assert _decide(role, TAP_TOPIC, "subscribe") == (False, NOT_STAFF)


def test_staff_may_call_inspect_and_subscribe_to_the_tap_exactly():
    assert _decide("staff", "inspect.sessions", "call") == (True, None)
    assert _decide("staff", TAP_TOPIC, "subscribe") == (True, None)
    allowed, reason = _decide("staff", "inspect.", "subscribe", match="prefix")
    assert not allowed and "exact" in str(reason)
    assert not _decide("staff", "inspect.other", "subscribe")[0]
    assert not _decide("staff", "inspect.sessions", "register")[0]
    assert not _decide("staff", "inspect.tap", "publish")[0]


def test_procedures_check_the_role_again_and_names_are_unique():
    inspector = Inspector()

    @inspector.procedure("echo")
    def echo(text: str, details: CallDetails) -> str:
        return text

    with pytest.raises(ValueError, match="declared twice"):
        inspector.add_procedure("echo", echo)
    checked = staff_only(inspector.procedures["inspect.echo"])
    staff = _details("staff")
    assert asyncio.run(checked("hi", details=staff)) == "hi"
    for details in (None, _details("user"), _details(None)):
        with pytest.raises(ApplicationError) as refused:
            asyncio.run(checked("hi", details=details))
        assert refused.value.error == "wamp.error.not_authorized"
