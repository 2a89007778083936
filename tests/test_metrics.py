"""Each service's /metrics, scraped over HTTP and parsed by prometheus_client's own parser:
after known actions every counter moved by exactly the expected amount."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
import zmq
from autobahn.wamp.exception import ApplicationError
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import load_config, stand_ins
from bridge.envelope import Ack
from sandbar import metrics
from sandbar.config import ConfigError
from sandbar.metrics import MetricsSettings
from tests.support.events import article
from tests.support.procs import (
    ROOT,
    SHIPPED_BRIDGE_CONFIG,
    Api,
    Bridge,
    Proc,
    Router,
    base_env,
    dealer,
    free_port,
    free_ports,
    http_ok,
    wait_until,
)
from tests.support.wamp import Client, backend_call
from tests.test_up import _reaped
from tests.topics_app import topics as test_topics
from topics.testing import TopicTester

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[str, float]:
    """Every count that changed, as ``name{labels}`` → delta: not the process's own, nor
    sums and buckets (which depend on the latency measured; checked apart)."""
    changed = {}
    for key in before.keys() | after.keys():
        name, labels = key
        if name.startswith(("process_", "python_", "sandbar_router_worker_")) or name.endswith(
            ("_sum", "_created", "_bucket")
        ):
            continue
        delta = after.get(key, 0.0) - before.get(key, 0.0)
        if delta:
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels))
            changed[f"{name}{{{shown}}}" if shown else name] = delta
    return changed


# -- bridge ---------------------------------------------------------------------------


@pytest.fixture
def metered_bridge(router, tmp_path):
    with Bridge(tmp_path, router, metrics_port=free_port()).start() as bridge:
        yield bridge


def _send_acknowledged(sock: zmq.Socket[bytes], event_id: str, age_ms: int) -> None:
    sent = {
        "id": event_id,
        "name": "article.created",
        "ts": time.time_ns() // 1_000_000 - age_ms,
        "payload": article("metered"),
        "ack": True,
    }
    sock.send(json.dumps(sent).encode())
    ack = Ack.from_bytes(sock.recv())
    assert (ack.id, ack.ok) == (event_id, True)


def test_bridge_counts_one_event_one_malformed_frame_and_one_reconnect(metered_bridge, router):
    bridge = metered_bridge
    sock = dealer(bridge.endpoint)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    before = scrape(bridge.metrics_url)
    assert value(before, "sandbar_bridge_router_connected") == 1

    _send_acknowledged(sock, "metered-1", age_ms=2000)  # stamped 2 s ago, as if queued
    sock.send(b"[1, 2, 3]")
    wait_until(lambda: bridge.stats()["malformed_total"] == 1, 5, "the bad frame counted")
    after = scrape(bridge.metrics_url)
    age = "sandbar_bridge_event_age_seconds"
    assert moved(before, after) == {
        "sandbar_bridge_frames_received_total": 2,
        "sandbar_bridge_events_received_total": 1,
        "sandbar_bridge_frames_malformed_total{reason=not_object}": 1,
        "sandbar_bridge_events_published_total": 1,
        "sandbar_bridge_ack_latency_seconds_count": 1,
        f"{age}_count{{route=article.created}}": 1,
    }
    # the age counts from the envelope's ts: at least the 2 s it was stamped before sending
    assert 2.0 <= value(after, f"{age}_sum", route="article.created") < 10
    assert value(after, f"{age}_bucket", route="article.created", le="1.0") == 0
    assert value(after, f"{age}_bucket", route="article.created", le="5.0") == 1
    stats = bridge.stats()  # one count, two views
    assert value(after, "sandbar_bridge_events_published_total") == stats["published"]
    assert value(after, "sandbar_bridge_events_buffered") == stats["buffered"] == 0
    assert value(after, "sandbar_bridge_events_in_flight") == stats["in_flight"] == 0

    backend_call(router.backend_url, "wamp.session.kill_by_authid", "bridge")
    wait_until(
        lambda: value(scrape(bridge.metrics_url), "sandbar_bridge_router_reconnects_total") == 1,
        10,
        "the bridge reconnected",
    )
    _send_acknowledged(sock, "metered-2", age_ms=0)
    again = scrape(bridge.metrics_url)
    assert value(again, "sandbar_bridge_router_connects_total") == 2
    assert value(again, "sandbar_bridge_router_connected") == 1
    assert value(again, "sandbar_bridge_events_published_total") == 2
    assert value(again, "sandbar_bridge_events_refused_total") == 0
    sock.close()


# -- api ------------------------------------------------------------------------------

ARTICLE = "/articles/<int:article_id>"


def _workers(api: Api) -> set[int]:
    return {p.pid for p in psutil.Process(api.proc.pid).children()}


def _gets_over_both_workers(api: Api, article: int) -> int:
    """GET the article on fresh connections until both workers answered one; how many."""
    workers, seen, count = _workers(api), set[int](), 0
    while seen != workers:
        assert count < 300, f"workers {workers} never all answered; saw {seen}"
        with requests.Session() as session:  # a fresh connection: any worker may accept it
            assert session.get(f"{api.url}/articles/{article}", timeout=5).status_code == 200
        count += 1
        pids = re.findall(
            rf'"GET /articles/{article} HTTP/1.1" 200 .* pid=<?(\d+)', api.proc.output()
        )
        seen = {int(pid) for pid in pids} & workers
    return count


def test_api_counts_across_two_workers_and_a_killed_one(metered_bridge, tmp_path):
    directory = tmp_path / "api-metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"a file of an earlier run")  # unreadable: wiped?
    api = Api(
        tmp_path,
        metered_bridge.endpoint,
        workers=2,
        metrics_port=str(free_port()),
        metrics_dir=str(directory),
    ).start()
    url = f"http://127.0.0.1:{api.proc.env['SANDBAR_API_METRICS_PORT']}/metrics"
    try:
        headers = api.auth  # signs in: before the first scrape
        before = scrape(url)
        created = requests.post(
            f"{api.url}/articles",
            headers=headers,
            json={"title": "metered", "body": "b"},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        article = created.json()["id"]
        acknowledged = "sandbar_api_events_acknowledged_total"
        wait_until(
            lambda: value(scrape(url), acknowledged, event="article.created") == 1, 10, "ack"
        )
        served = requests.get(f"{api.url}/events?topic=articles&after=0", headers=headers)
        assert len(served.json()["events"]) == 1
        refused = requests.get(f"{api.url}/events", headers=headers)  # no topic
        assert refused.status_code == 400
        gets = _gets_over_both_workers(api, article)
        after = scrape(url)
        expected = {
            "sandbar_api_requests_total{method=POST,route=/articles,status=201}": 1,
            "sandbar_api_request_seconds_count{method=POST,route=/articles}": 1,
            "sandbar_api_requests_total{method=GET,route=/events,status=200}": 1,
            "sandbar_api_requests_total{method=GET,route=/events,status=400}": 1,
            "sandbar_api_request_seconds_count{method=GET,route=/events}": 2,
            f"sandbar_api_requests_total{{method=GET,route={ARTICLE},status=200}}": gets,
            f"sandbar_api_request_seconds_count{{method=GET,route={ARTICLE}}}": gets,
            "sandbar_api_events_committed_total{event=article.created}": 1,
            "sandbar_api_events_sent_total{event=article.created}": 1,
            f"{acknowledged}{{event=article.created}}": 1,
            "sandbar_api_catch_up_requests_total{status=200}": 1,
            "sandbar_api_catch_up_requests_total{status=400}": 1,
            "sandbar_api_catch_up_events_total": 1,
        }
        assert moved(before, after) == expected
        assert value(after, "sandbar_api_outbox_backlog") == 0
        assert value(after, "sandbar_api_outbox_oldest_age_seconds") == 0

        victim = min(_workers(api))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in _workers(api) and len(_workers(api)) == 2, 20, "replaced")
        wait_until(lambda: http_ok(f"{api.url}/healthz"), 20, "api answering")
        replaced = scrape(url)
        # the dead worker's counts are still summed, once; /healthz polls are their own route
        changed = {k: v for k, v in moved(after, replaced).items() if "/healthz" not in k}
        assert changed == {}
        more = _gets_over_both_workers(api, article)
        again = scrape(url)
        route = {"method": "GET", "route": ARTICLE, "status": "200"}
        assert value(again, "sandbar_api_requests_total", **route) == gets + more
        # what is served is documented; all of it but what needs a lost ack or a refusal
        rare = {
            "sandbar_api_events_resent_total",
            "sandbar_api_events_refused_total",
            "sandbar_api_events_schema_refused_total",  # tests/test_typed_events.py
        }
        ours = {name for name in _families(url) if name.startswith("sandbar_api_")}
        assert ours == _documented("sandbar_api_") - rare  # browsers': see below
    finally:
        api.stop()


def test_the_outbox_backlog_gauges_read_unacknowledged_rows(tmp_path):
    """No bridge: the committed event stays unacknowledged and ages."""
    api = Api(tmp_path, f"tcp://127.0.0.1:{free_port()}", workers=2, metrics_port=str(free_port()))
    url = f"http://127.0.0.1:{api.proc.env['SANDBAR_API_METRICS_PORT']}/metrics"
    with api.start():
        created = requests.post(
            f"{api.url}/articles", headers=api.auth, json={"title": "kept", "body": "b"}, timeout=5
        )
        assert created.status_code == 201
        time.sleep(0.3)
        samples = scrape(url)
        assert value(samples, "sandbar_api_outbox_backlog") == 1
        assert 0.3 <= value(samples, "sandbar_api_outbox_oldest_age_seconds") < 30
        assert value(samples, "sandbar_api_events_committed_total", event="article.created") == 1


# -- topics ---------------------------------------------------------------------------


def _denied(client: Client, uri: str) -> None:
    with pytest.raises(ApplicationError):
        client.subscribe(uri)


def test_topics_counts_decisions_publishes_hook_errors_sessions_and_tokens(
    router, topics_metrics_port
):
    url = f"http://127.0.0.1:{topics_metrics_port}/metrics"
    before = scrape(url)
    assert value(before, "sandbar_topics_leader") == 1

    client = Client(router.ws_url)  # anonymous
    _denied(client, "nope.nothing")  # the refused subscribe
    client.subscribe("articles")
    client.call("chat.lobby", {"text": "hi"})  # a handled publish, published
    with pytest.raises(ApplicationError, match="internal error in the topic"):
        client.call("boom.x", {"text": "hi"})  # its on_subscribe (the sender check) raises
    with pytest.raises(ApplicationError):
        Client(router.ws_url, ticket="not-a-token")  # nothing answers at the API's URL
    client.close()

    chat = "chat.{channel:[a-z0-9][a-z0-9_-]{0,31}}"
    expected = {
        "sandbar_topics_sessions_joined_total{role=anonymous}": 1,
        "sandbar_topics_decisions_total{action=subscribe,result=deny,topic=(none)}": 1,
        "sandbar_topics_decisions_total{action=subscribe,result=allow,topic=articles}": 1,
        f"sandbar_topics_decisions_total{{action=call,result=allow,topic={chat}}}": 1,
        "sandbar_topics_decisions_total{action=call,result=allow,topic=boom.{x}}": 1,
        "sandbar_topics_decision_seconds_count{action=subscribe}": 2,
        "sandbar_topics_decision_seconds_count{action=call}": 2,
        "sandbar_topics_handled_publishes_total{result=published}": 1,
        "sandbar_topics_handled_publishes_total{result=not_authorized}": 1,
        "sandbar_topics_hook_errors_total{hook=on_subscribe,topic=boom.{x}}": 1,
        "sandbar_topics_token_checks_total{result=unavailable}": 1,
        "sandbar_topics_token_check_seconds_count": 1,
        "sandbar_topics_sessions_left_total": 1,
    }

    with contextlib.suppress(TimeoutError):  # the leave is a meta event, a moment later
        wait_until(lambda: moved(before, scrape(url)) == expected, 5, "all counted")
    assert moved(before, scrape(url)) == expected


def test_the_in_process_tester_counts_as_the_service_does():
    tester = TopicTester(test_topics)
    registry = tester.authorizer.metrics.registry
    client = tester.client()
    assert not client.subscribe("nope.nothing")
    assert client.subscribe("articles")
    sample = registry.get_sample_value
    decisions = "sandbar_topics_decisions_total"
    assert sample(decisions, {"action": "subscribe", "result": "deny", "topic": "(none)"}) == 1
    assert sample(decisions, {"action": "subscribe", "result": "allow", "topic": "articles"}) == 1
    assert sample("sandbar_topics_decision_seconds_count", {"action": "subscribe"}) == 2
    tester.close()


# -- sandbar up -----------------------------------------------------------------------


def test_sandbar_up_serves_and_prints_the_metrics_urls(tmp_path: Path):
    """``sandbar up``'s own code (tests/support/stack.py: topics and bridge, no router)."""
    ports = {name: free_port() for name in ("router", "backend", "bridge")}
    base = free_ports(4)  # bridge, topics, api, router: adjacent, all this worker's
    argv = [sys.executable, "-m", "tests.support.stack", "--run-dir", str(tmp_path / "run")]
    argv += [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    up = Proc("up", [*argv, "--metrics-port", str(base)], base_env(PYTHONPATH=str(ROOT)), tmp_path)
    pids: list[int] = []
    with _reaped(up, pids):
        up.start()
        wait_until(lambda: "Sandbar is ready" in up.output(), 30, "ready banner")
        [line] = [line for line in up.output().splitlines() if line.startswith("  metrics ")]
        urls = dict(
            (name.strip("()"), url)
            for url, name in zip(line.split()[1::2], line.split()[2::2], strict=True)
        )
        # this stack runs no api and no router (see above): their metrics are tested apart
        assert set(urls) == {"bridge", "topics", "api", "router"}
        port = {name: int(url.rsplit(":", 1)[1].split("/")[0]) for name, url in urls.items()}
        assert port["topics"] == port["bridge"] + 1
        assert port["api"] == port["bridge"] + 2
        assert port["router"] == port["bridge"] + 3
        del urls["api"], urls["router"]
        wait_until(lambda: requests.get(urls["bridge"], timeout=2).ok, 20, "bridge metrics")
        wait_until(lambda: requests.get(urls["topics"], timeout=2).ok, 20, "topics metrics")
        assert value(scrape(urls["bridge"]), "sandbar_bridge_router_connected") == 0
        assert value(scrape(urls["topics"]), "sandbar_topics_leader") == 0
        served = {name for url in urls.values() for name in _families(url)}
    # the README's Metrics table lists exactly what is served (the api's, router's: apart)
    others = {
        name for name in _documented() if name.startswith(("sandbar_bridge_", "sandbar_topics_"))
    }
    assert served == others


def _documented(prefix: str = "sandbar_") -> set[str]:
    rows = re.findall(r"^\| `(sandbar_\w+)`", (ROOT / "README.md").read_text(), re.M)
    return {name for name in rows if name.startswith(prefix)}


def _families(url: str) -> set[str]:
    text = requests.get(url, timeout=5).text
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        if family.name.startswith("sandbar_")
    }


# -- settings -------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    metrics.add_arguments(parser, "bridge")
    return parser.parse_args(list(argv))


def test_the_flag_beats_the_environment_which_beats_the_yaml():
    yaml_says = MetricsSettings(host="127.0.0.2", port=9001)
    env = {"SANDBAR_BRIDGE_METRICS_PORT": "9002"}
    assert metrics.settings_from(_args(), "bridge", yaml_says, {}) == yaml_says
    assert metrics.settings_from(_args(), "bridge", yaml_says, env).port == 9002
    assert (
        metrics.settings_from(_args("--metrics-port", "9003"), "bridge", yaml_says, env).port
        == 9003
    )
    assert metrics.settings_from(_args("--metrics-port", ""), "bridge", yaml_says, env).port == 0
    assert (
        metrics.settings_from(_args(), "bridge", None, {"SANDBAR_BRIDGE_METRICS_PORT": " "}).port
        == 0
    )
    assert metrics.settings_from(_args(), "bridge", None, {}) == MetricsSettings()  # off, loopback
    with pytest.raises(ConfigError, match="SANDBAR_BRIDGE_METRICS_PORT: 'x' is not a port"):
        metrics.settings_from(_args(), "bridge", None, {"SANDBAR_BRIDGE_METRICS_PORT": "x"})
    with pytest.raises(SystemExit):
        _args("--metrics-port", "70000")


def test_the_bridge_yaml_metrics_section_is_validated(tmp_path):
    config = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({**config, "metrics": {"port": 9100}}))
    env, _ = stand_ins(path)  # no secrets needed
    assert load_config(path, env, check_only=True).metrics.port == 9100
    path.write_text(yaml.safe_dump({**config, "metrics": {"prot": 9100}}))
    with pytest.raises(ConfigError, match="prot"):
        load_config(path, env, check_only=True)


def test_a_taken_metrics_port_is_logged_and_the_service_runs_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = MetricsSettings(port=port)
        assert metrics.serve(metrics.new_registry(), settings, "bridge") is None
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
    assert "SANDBAR_BRIDGE_METRICS_PORT" in caplog.text


# -- router ---------------------------------------------------------------------------


@pytest.fixture
def metered_router(tmp_path):
    with Router(tmp_path, metrics_port=free_port()).start() as router:
        yield router


def _wire(client: Client) -> Any:
    """The client's serializer: what it counted is what the router saw from the other end."""
    return client.session._transport._serializer


def _router_worker(router: Router) -> psutil.Process:
    [worker] = [
        child
        for child in psutil.Process(router.proc.pid).children(recursive=True)
        if "router" in " ".join(child.cmdline()) and "worker" in " ".join(child.cmdline())
    ]
    return worker


def test_router_counts_sessions_subscriptions_messages_events_and_bytes(metered_router):
    router = metered_router
    before = scrape(router.metrics_url)
    assert value(before, "sandbar_router_sessions", role="backend") == 0
    subscriber = Client(router.backend_url, authid="topics")
    publisher = Client(router.backend_url, authid="bridge")
    browser = Client(router.ws_url)  # anonymous; its subscribe finds no authorizer: refused
    wires = [_wire(each) for each in (subscriber, publisher, browser)]
    subscriber.subscribe("metered.topic")
    publisher.publish("metered.topic", "one")
    subscriber.wait_for(1)
    _denied(browser, "metered.topic")
    during = scrape(router.metrics_url)
    sent = "sandbar_router_messages_sent_total"
    received = "sandbar_router_messages_received_total"
    assert moved(before, during) == {
        "sandbar_router_sessions{role=backend}": 2,
        "sandbar_router_sessions{role=anonymous}": 1,
        "sandbar_router_sessions_joined_total{role=backend}": 2,
        "sandbar_router_sessions_joined_total{role=anonymous}": 1,
        "sandbar_router_subscriptions": 1,
        "sandbar_router_subscribed_topics": 1,
        f"{received}{{type=subscribe}}": 2,
        # one by the publisher, five by the router's meta API: on_join x3, on_create, on_subscribe
        f"{received}{{type=publish}}": 6,
        f"{sent}{{type=subscribed}}": 1,
        f"{sent}{{type=published}}": 1,
        f"{sent}{{type=event}}": 1,
        # the refused subscribe: the router calls the authorizer (sandbar.authorize) from its
        # own session, gets an ERROR (nothing registered it) and answers the browser with one
        f"{received}{{type=call}}": 1,
        f"{sent}{{type=error}}": 2,
        "sandbar_router_events_delivered_total": 1,
        "sandbar_router_received_bytes_total": sum(w._serialized_bytes for w in wires),
        "sandbar_router_sent_bytes_total": sum(w._unserialized_bytes for w in wires),
    }
    for each in (subscriber, publisher, browser):
        each.close()
    wait_until(
        lambda: value(scrape(router.metrics_url), "sandbar_router_sessions", role="backend") == 0,
        5,
        "sessions gone",
    )
    after = scrape(router.metrics_url)
    # the goodbyes counted too, once: a closed connection's bytes stay in the totals
    assert value(after, "sandbar_router_received_bytes_total") == sum(
        w._serialized_bytes for w in wires
    )
    assert value(after, "sandbar_router_sent_bytes_total") == sum(
        w._unserialized_bytes for w in wires
    )
    assert value(after, "sandbar_router_subscriptions") == 0
    assert value(after, "sandbar_router_sessions_joined_total", role="backend") == 2
    worker = _router_worker(router)
    rss = value(after, "sandbar_router_worker_resident_memory_bytes")
    assert abs(rss - worker.memory_info().rss) < 0.1 * rss
    cpu = worker.cpu_times()
    assert 0 < value(after, "sandbar_router_worker_cpu_seconds_total") <= cpu.user + cpu.system
    assert _families(router.metrics_url) == _documented("sandbar_router_")


def test_the_router_renders_its_metrics_settings_and_refuses_bad_ones(tmp_path, monkeypatch):
    from sandbar.router import config_from_args, render
    from sandbar.router_metrics import metrics_settings

    argv = ["--run-dir", str(tmp_path / "router"), "--metrics-port", "9999"]
    rendered = yaml.safe_load((render(config_from_args(argv)) / "config.yaml").read_text())
    [component] = [
        each
        for each in rendered["workers"][0]["components"]
        if each["classname"].endswith("RouterMetrics")
    ]
    assert component["extra"] == {"host": "127.0.0.1", "port": 9999}
    served = metrics_settings({**component["extra"], "cbdir": "/x"})  # Crossbar adds cbdir
    assert served.url == "http://127.0.0.1:9999/metrics"
    with pytest.raises(ConfigError, match="prot"):
        metrics_settings({"prot": 9999})
    monkeypatch.setenv("SANDBAR_ROUTER_METRICS_PORT", "x")
    with pytest.raises(ConfigError, match="SANDBAR_ROUTER_METRICS_PORT: 'x' is not a port"):
        config_from_args(["--run-dir", str(tmp_path / "router")])


# -- browser event ages (POST /event-ages, summed over the API's workers) -------------

AGE = "sandbar_browser_event_age_seconds"
REPORTS = "sandbar_browser_event_age_reports_total"


def test_event_age_reports_are_checked_clamped_limited_and_summed_over_workers(tmp_path):
    api = Api(tmp_path, f"tcp://127.0.0.1:{free_port()}", workers=2, metrics_port=str(free_port()))
    url = f"http://127.0.0.1:{api.proc.env['SANDBAR_API_METRICS_PORT']}/metrics"
    with api.start():
        now = requests.get(f"{api.url}/time", timeout=5).json()["now"]
        assert abs(now - time.time() * 1000) < 5000
        before = scrape(url)
        reports = [
            [{"topic": "articles", "age": 0.02}, {"topic": "chat.lobby", "age": 0.5}],
            [{"topic": "articles", "age": -3}, {"topic": "not.declared", "age": 1e9}],
        ]
        for number, ages in enumerate(reports, 1):  # new connections: either worker
            answer = requests.post(
                f"{api.url}/event-ages", json={"session": number, "ages": ages}, timeout=5
            )
            assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": 2, "clamped": 2}
        refused: dict[str, dict[str, Any]] = {
            "ages[0].age: must be a number of seconds": {"ages": [{"topic": "a", "age": "1"}]},
            "ages[1].topic: must be the event's topic URI": {
                "ages": [{"topic": "a", "age": 1}, {"age": 1}]
            },
            "ages: at most 200 per report": {"ages": [{"topic": "a", "age": 1}] * 201},
            "ages: must be a list": {"ages": {"topic": "a"}},
            "session: must be the page's WAMP session id": {"session": "x", "ages": []},
        }
        for message, body in refused.items():
            answer = requests.post(f"{api.url}/event-ages", json={"session": 9, **body}, timeout=5)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["message"].startswith(message)
        with requests.Session() as one:  # one connection, one worker: its bucket of 5
            codes = [
                one.post(
                    f"{api.url}/event-ages", json={"session": 77, "ages": []}, timeout=5
                ).status_code
                for _ in range(6)
            ]
        assert codes == [202] * 5 + [429]
        chat = "chat.{channel:[a-z0-9][a-z0-9_-]{0,31}}"
        assert moved(before, scrape(url)) == {
            f"{AGE}_count{{topic=articles}}": 2,
            f"{AGE}_count{{topic={chat}}}": 1,
            f"{AGE}_count{{topic=(none)}}": 1,
            f"{REPORTS}{{result=accepted}}": 7,
            f"{REPORTS}{{result=malformed}}": 5,
            f"{REPORTS}{{result=rate_limited}}": 1,
            "sandbar_browser_event_ages_clamped_total": 2,
            # the requests themselves
            "sandbar_api_requests_total{method=POST,route=/event-ages,status=202}": 7,
            "sandbar_api_requests_total{method=POST,route=/event-ages,status=400}": 5,
            "sandbar_api_requests_total{method=POST,route=/event-ages,status=429}": 1,
            "sandbar_api_request_seconds_count{method=POST,route=/event-ages}": 13,
        }
        after = scrape(url)
        assert value(after, f"{AGE}_sum", topic="articles") == pytest.approx(0.02)  # -3 → 0
        assert value(after, f"{AGE}_sum", topic="(none)") == 300  # clamped to the top bucket
        assert _families(url) >= _documented("sandbar_browser_")


def test_a_taken_router_metrics_port_is_logged_and_the_router_runs_on(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Router(tmp_path, metrics_port=port).start() as router:
            wait_until(
                lambda: f"cannot serve metrics on 127.0.0.1:{port}" in router.proc.output(),
                10,
                "the taken port logged",
            )
            assert "SANDBAR_ROUTER_METRICS_PORT" in router.proc.output()
            client = Client(router.backend_url, authid="topics")  # the router serves on
            client.close()
