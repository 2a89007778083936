"""Print the table and the verdicts; write the run's JSON and figure under bench/results/."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.measure import percentile

RESULTS = Path(__file__).parent / "results"


def _versions() -> dict[str, str]:
    names = ("crossbar", "autobahn", "twisted", "pyzmq", "gunicorn", "flask", "psycopg")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def table(r: dict[str, Any]) -> str:
    med = r["medians"]
    base1, base10 = med["limit"][1], med["limit"][10]
    s = r["settings"]
    lines = [
        f"Events/s counted at every subscriber: median of {s['rounds']} round(s) of "
        f"{s['count']} events ({s['count'] // 4} for http-publisher, rest and rest-pg; a third "
        f"of that at 10 subscribers); latency at {s['rate']:.0f} events/s for "
        f"{s['seconds']:.0f} s (after 1 s of warm-up at that rate), send -> arrival at the "
        f"subscriber. rest-pg: the same API on PostgreSQL {r['postgres']['version']} "
        "(a local throwaway server, fsync on); its api CPU is api+postgres (every backend).",
        "",
        "| path | events/s, 1 sub | x limit | events/s, 10 subs | deliveries/s, 10 subs "
        "| x limit | p50 ms | p95 ms | p99 ms | max ms "
        "| CPU %, 1 sub: router/bridge/api/subscriber |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path, by_subs in med.items():
        lat = r["latency"][path]
        cpu = "/".join(_cpu(r, path))
        lines.append(
            f"| {path} | {by_subs[1]:.0f} | {by_subs[1] / base1:.2f} | {by_subs[10]:.0f} | "
            f"{by_subs[10] * 10:.0f} | {by_subs[10] / base10:.2f} | "
            f"{percentile(lat, 50):.2f} | {percentile(lat, 95):.2f} | "
            f"{percentile(lat, 99):.2f} | {max(lat):.2f} | {cpu} |"
        )
    lines += [
        "",
        "| fan-out: subscribers | to the last, median ms | max ms | router RSS per connection |",
        "|---:|---:|---:|---:|",
    ]
    for f in r["fanout"]:
        lines.append(
            f"| {f['subscribers']} | {f['median_ms']} | {f['max_ms']} | "
            f"{f['rss_kb_per_connection']} KB |"
        )
    return "\n".join(lines)


def _cpu(r: dict[str, Any], path: str) -> list[str]:
    """router, bridge, api (rest-pg: its API + the PostgreSQL server), subscriber: % of a core."""
    got = r["cpu"].get(f"{path}/1/0", {})
    api = str(got.get("api", 0))
    if path == "rest-pg":
        api = f"{got.get('api-pg', 0)}+{got.get('postgres', 0)}"
    elif path == "rest-traced":
        api = str(got.get("api-traced", 0))
    return [
        str(got.get("router", 0)),
        str(got.get("bridge", 0)),
        api,
        str(got.get("subscribers0", 0)),
    ]


def _api_us_per_event(r: dict[str, Any], path: str) -> float:
    """CPU of the API (and, for rest-pg, of its database server) per event, 1 subscriber."""
    got = r["cpu"].get(f"{path}/1/0", {})
    percent = got.get("api-pg", 0) + got.get("postgres", 0) if path == "rest-pg" else got["api"]
    if path == "rest-traced":
        percent = got["api-traced"]
    return 1e4 * percent / r["medians"][path][1]


def comparisons(r: dict[str, Any]) -> list[tuple[str, str]]:
    """How rest-pg compares to rest (no target: what PostgreSQL costs on one machine)."""
    med, lat = r["medians"], r["latency"]
    pg, sq = med["rest-pg"], med["rest"]
    p50, p99 = (percentile(lat["rest-pg"], q) for q in (50, 99))
    s50, s99 = (percentile(lat["rest"], q) for q in (50, 99))
    cpu_pg, cpu_sq = _api_us_per_event(r, "rest-pg"), _api_us_per_event(r, "rest")
    rows = [
        ("rest-pg / rest, events/s at 1 sub", f"{pg[1] / sq[1]:.2f}x ({pg[1]:.0f} vs {sq[1]:.0f})"),
        ("rest-pg / rest, events/s at 10 subs", f"{pg[10] / sq[10]:.2f}x"),
        ("rest-pg / rest, p50 latency", f"{p50 / s50:.2f}x ({p50:.2f} vs {s50:.2f} ms)"),
        ("rest-pg / rest, p99 latency", f"{p99 / s99:.2f}x ({p99:.2f} vs {s99:.2f} ms)"),
        (
            "rest-pg / rest, CPU per event (api+postgres vs api)",
            f"{cpu_pg / cpu_sq:.2f}x ({cpu_pg:.0f} vs {cpu_sq:.0f} us)",
        ),
    ]
    if "rest-traced" in med:  # bench.paths --tracing: what spans cost the API
        traced, cpu_tr = med["rest-traced"], _api_us_per_event(r, "rest-traced")
        rows += [
            ("rest-traced / rest, events/s at 1 sub", f"{traced[1] / sq[1]:.2f}x"),
            (
                "rest-traced / rest, API CPU per event",
                f"{cpu_tr / cpu_sq:.2f}x ({cpu_tr:.0f} vs {cpu_sq:.0f} us)",
            ),
        ]
    return rows


def verdicts(r: dict[str, Any]) -> list[tuple[str, bool, str]]:
    med = r["medians"]
    limit, bridge, http, rest = (med[p][1] for p in ("limit", "bridge", "http-publisher", "rest"))
    p99 = percentile(r["latency"]["rest"], 99)
    fan = {f["subscribers"]: f["median_ms"] for f in r["fanout"]}
    return [
        ("bridge >= 0.95x limit", bridge >= 0.95 * limit, f"{bridge / limit:.2f}x"),
        ("bridge >= 2.3x http-publisher", bridge >= 2.3 * http, f"{bridge / http:.2f}x"),
        (
            f"rest p99 <= 4 ms at {r['settings']['rate']:.0f} events/s",
            p99 <= 4.0,
            f"{p99:.2f} ms",
        ),
        ("rest >= 0.45x limit", rest >= 0.45 * limit, f"{rest / limit:.2f}x"),
        ("fan-out to 1000 <= 60 ms", fan.get(1000, 1e9) <= 60, f"{fan.get(1000)} ms"),
    ]


def figure(r: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for path, values in r["latency"].items():
        ordered = sorted(values)
        left.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=path)
    left.set_xscale("log")
    left.set_xlabel("send -> subscriber, ms (log)")
    left.set_ylabel("fraction of events")
    left.set_title(f"Latency CDF at {r['settings']['rate']:.0f} events/s, 1 subscriber")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    paths = list(r["medians"])
    x = range(len(paths))
    one = [r["medians"][p][1] for p in paths]
    ten = [r["medians"][p][10] * 10 for p in paths]
    right.bar([i - 0.2 for i in x], one, 0.4, label="events/s, 1 subscriber")
    right.bar([i + 0.2 for i in x], ten, 0.4, label="deliveries/s, 10 subscribers")
    right.set_xticks(list(x), paths)
    right.set_ylim(0, max(one + ten) * 1.3)  # room for the legend
    right.set_title("Throughput, counted at the subscribers")
    right.legend()
    right.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def publish(r: dict[str, Any]) -> None:
    print()
    print(table(r))
    print("\nVerdicts (targets for 2 cores, everything on one machine):")
    for name, ok, value in verdicts(r):
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {value}")
    for name, value in comparisons(r):
        print(f"  ----  {name}: {value}")
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "versions": _versions(),
        "verdicts": [{"target": n, "met": ok, "value": v} for n, ok, v in verdicts(r)],
        "comparisons": dict(comparisons(r)),
        **r,
    }
    out = RESULTS / "paths.json"
    out.write_text(json.dumps(doc, indent=1, default=str))
    png = RESULTS / "paths.png"
    figure(r, png)
    print(
        f"\n(run took {r['duration_s']} s; load average {os.getloadavg()[0]:.2f}; "
        f"data: {out}; figure: {png})"
    )
