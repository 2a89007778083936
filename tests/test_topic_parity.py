"""The harness decides as the service does: one scenario table, run in-process through
topics.testing and against the real router + topics service, gives identical outcomes."""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.support.procs import Api, Router, wait_until
from tests.support.wamp import Client
from tests.topic_scenarios import APP, SCENARIOS, USERS, Outcome, Scenario
from topics.testing import Refused, Reject, TestClient, TopicTester

PASSWORD = "correct horse battery"
REJECTED = "sandbar.error.rejected"


def _topics():
    module, _, attribute = APP.partition(":")
    return getattr(importlib.import_module(module), attribute)


def harness_outcome(client: TestClient, scenario: Scenario) -> Outcome:
    if scenario.action == "subscribe":
        decision = client.subscribe(scenario.uri, scenario.match)
        return ("allowed", None) if decision.allowed else ("denied", decision.reason)
    try:
        if scenario.action == "publish":
            client.publish(scenario.uri, *scenario.args)
            return ("ok", None)
        result = client.call(scenario.uri, *scenario.args)
    except Reject as exc:
        return (REJECTED, exc.reason)
    except Refused as exc:
        return (exc.error, exc.reason)
    return ("ok", result["reason"] if scenario.uri == "explain.subscribe" else None)


def real_outcome(client: Client, scenario: Scenario, denials: Callable[[], str]) -> Outcome:
    try:
        if scenario.action == "subscribe":
            client.subscribe(
                scenario.uri, match=None if scenario.match == "exact" else scenario.match
            )
            return ("allowed", None)
        if scenario.action == "publish":
            client.publish(scenario.uri, *scenario.args)
            return ("ok", None)
        result = client.call(scenario.uri, *scenario.args)
    except ApplicationError as exc:
        if scenario.action == "subscribe":
            return ("denied", client.call("explain.subscribe", scenario.uri)["reason"])
        said = str(exc.args[0]) if exc.args else ""
        router_refused = "not authorized to" in said  # the router's words, not the reason
        if exc.error != "wamp.error.not_authorized" or not router_refused:
            return (exc.error, exc.args[0])  # the topics service's own answer, with its reason
        return (exc.error, _logged_reason(client, scenario, denials))
    return ("ok", result["reason"] if scenario.uri == "explain.subscribe" else None)


def _logged_reason(client: Client, scenario: Scenario, denials: Callable[[], str]) -> str:
    """The router says only not_authorized; the topics service logs the reason."""
    line = re.compile(
        rf"denied {scenario.action} '{re.escape(scenario.uri)}' to session {client.id} "
        r"\([^)]*\): (.*)"
    )
    wait_until(lambda: line.search(denials()), 5, "denial logged")
    return str(line.findall(denials())[-1])


def test_the_harness_and_the_real_service_agree_on_every_scenario(
    router: Router, api: Api, capsys: pytest.CaptureFixture[str]
):
    for user, role in USERS.items():
        api.add_user(user, PASSWORD, role=role)
    real: dict[str | None, Client] = {None: Client(router.ws_url)}
    real.update(
        {u: Client(router.ws_url, authid=u, ticket=api.sign_in(u, PASSWORD)) for u in USERS}
    )
    log = router.proc.log_path.parent / "topics.log"
    try:
        started = time.perf_counter()
        got_real = [real_outcome(real[s.who], s, log.read_text) for s in SCENARIOS]
        real_seconds = time.perf_counter() - started
    finally:
        for each in real.values():
            each.close()

    with TopicTester(_topics()) as tester:
        fake: dict[str | None, TestClient] = {None: tester.client()}
        fake.update({u: tester.client(authid=u, authrole=r) for u, r in USERS.items()})
        started = time.perf_counter()
        got_harness = [harness_outcome(fake[s.who], s) for s in SCENARIOS]
        harness_seconds = time.perf_counter() - started

    mismatches = [
        f"{s}: harness {h}, service {r}"
        for s, h, r in zip(SCENARIOS, got_harness, got_real, strict=True)
        if h != r
    ]
    assert not mismatches, "\n".join(mismatches)
    kinds = {outcome[0] for outcome in got_real}
    assert {"allowed", "denied", "ok", REJECTED, "wamp.error.not_authorized"} <= kinds
    n = len(SCENARIOS)
    with capsys.disabled():
        print(
            f"\n{n} rule checks: harness {harness_seconds / n * 1e3:.3f} ms each, "
            f"real router + topics service {real_seconds / n * 1e3:.1f} ms each "
            f"({real_seconds / harness_seconds:.0f}x)"
        )
