"""Rejected requests per second on one Synapse process, with /health beside them.

One Synapse with the module (10,000 username patterns, a banned network, a
per-IP limit of 2 requests). X-Forwarded-For is trusted from 127.0.0.1, so the
load generator speaks for one client per scenario:

- rate limited: a client whose per-IP bucket is empty (answered 429),
- IP banned: a client in the banned network (403),
- username banned: a name matching a ban pattern (400).

The floor: the do-nothing module (benchmarks/floor_module.py) loaded in the
same Synapse, which parses the same JSON body and writes a 429 straight to the
request. Each round floods the floor and a scenario in turn (A B A B ..., the
pair's order flipping each round), so the machine's moods fall on both alike.
Verdicts are ratios: each scenario's rate (median of the rounds) to the
floor's (median of every floor flood) at least 0.85x, and the p99 of /health,
polled every 10 ms by another process during the flood, at most 1.5x its p99
during the floor's floods. Synapse's own /health flooded alone is context.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from common import (
    API_REQUEST,
    FLOOR_REFUSE,
    Context,
    Result,
    cpu_seconds,
    flood_with_health,
    gate_config,
    load_generator,
    median,
    request_body,
    say,
    warm_up,
)

CONCURRENCY = 32


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _flood(pid: int, port: int, duration: float, **load: Any) -> dict[str, float]:
    cpu0, kids0, busy0 = cpu_seconds(pid), _children_cpu(), _busy_cpu()
    report, health = flood_with_health(port, duration=duration, **load)
    synapse_cpu = cpu_seconds(pid) - cpu0
    clients_cpu = _children_cpu() - kids0
    others = max(0.0, _busy_cpu() - busy0 - synapse_cpu - clients_cpu)
    return {
        "rate": report["rate"],
        "requests": report["requests"],
        "non_expected": 0,
        "health_p99_ms": health["latency_ms"]["p99"],
        "health_max_ms": health["latency_ms"]["max"],
        "synapse_cpu_per_s": synapse_cpu / report["elapsed"],
        "per_synapse_cpu_s": report["requests"] / synapse_cpu if synapse_cpu else 0.0,
        "others_cpu_per_s": others / report["elapsed"],
        "statuses": report["statuses"],
    }


RATE_TARGET = 0.85
P99_TARGET = 1.5
FLOOR = "floor (do-nothing module, 429)"
HEALTH = "/health (Synapse alone)"


def run(ctx: Context) -> list[Result]:
    server = ctx.server(
        gate_config(ctx, None, per_ip={"burst": 2, "per_second": 0.001}), floor=True
    )
    duration = 2.0 if ctx.quick else 3.0
    limited = {
        "path": API_REQUEST,
        "body": request_body("flooder", "flooder@example.org"),
        "header": "X-Forwarded-For: 198.51.100.7",
    }
    floor = dict(limited, path=FLOOR_REFUSE)
    scenarios: list[tuple[str, str, dict[str, Any]]] = [
        ("rate limited", "429", limited),
        (
            "IP banned",
            "403",
            {
                "path": API_REQUEST,
                "body": request_body("flooder", "flooder@example.org"),
                "header": "X-Forwarded-For: 203.0.113.9",
            },
        ),
        (
            "username banned",
            "400",
            {
                "path": API_REQUEST,
                "body": request_body(ctx.patterns[0].replace("\\", ""), "flooder@example.org"),
                "header": "X-Forwarded-For: 198.51.100.8",
            },
        ),
    ]
    names = [FLOOR, HEALTH] + [name for name, _, _ in scenarios]
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    pairs: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
        name: [] for name, _, _ in scenarios
    }

    def flood(name: str, expected: str, load: dict[str, Any]) -> dict[str, float]:
        figure = _flood(server.pid or 0, server.port, duration, concurrency=CONCURRENCY, **load)
        statuses = figure.pop("statuses")
        assert isinstance(statuses, dict)
        figure["non_expected"] = sum(n for code, n in statuses.items() if code != expected)
        figures[name].append(figure)
        time.sleep(0.3)
        return figure

    try:
        server.start(timeout=120)
        warm_up(server, count=2)
        # Empty the flooding client's bucket so the flood meets the limit at once.
        for _ in range(3):
            _flood(server.pid or 0, server.port, 1.0, concurrency=1, **limited)
        for round_no in range(ctx.runs):
            for name, expected, load in scenarios:
                if round_no % 2 == 0:
                    base = flood(FLOOR, "429", floor)
                    mine = flood(name, expected, load)
                else:
                    mine = flood(name, expected, load)
                    base = flood(FLOOR, "429", floor)
                pairs[name].append((mine, base))
            flood(HEALTH, "200", {"path": "/health", "method": "GET"})
    finally:
        server.stop()

    def med(name: str, key: str) -> float:
        return median([f[key] for f in figures[name]])

    floor_rate, floor_p99 = med(FLOOR, "rate"), med(FLOOR, "health_p99_ms")
    say(f"    load generator: {load_generator()}, {CONCURRENCY} connections, {duration:.0f} s runs")
    for name in names:
        rate, p99 = med(name, "rate"), med(name, "health_p99_ms")
        say(
            f"    {name:<32} {rate:7.0f}/s  (runs {min(f['rate'] for f in figures[name]):.0f}-"
            f"{max(f['rate'] for f in figures[name]):.0f}); /health p99 {p99:.1f} ms, "
            f"max {med(name, 'health_max_ms'):.1f} ms; Synapse CPU "
            f"{med(name, 'synapse_cpu_per_s'):.2f} core, {med(name, 'per_synapse_cpu_s'):.0f} "
            f"answers per Synapse CPU-second; other processes {med(name, 'others_cpu_per_s'):.2f}"
            f" core; unexpected answers {sum(f['non_expected'] for f in figures[name]):.0f}"
        )
    results = []
    for name, _, _ in scenarios:
        rate, p99 = med(name, "rate"), med(name, "health_p99_ms")
        ratio = rate / floor_rate
        p99_ratio = p99 / floor_p99 if floor_p99 else float("inf")
        round_ratios = [mine["rate"] / base["rate"] for mine, base in pairs[name]]
        cpu_ratio = med(name, "per_synapse_cpu_s") / med(FLOOR, "per_synapse_cpu_s")
        unexpected = any(f["non_expected"] for f in figures[name] + figures[FLOOR])
        ok = ratio >= RATE_TARGET and p99_ratio <= P99_TARGET and not unexpected
        results.append(
            Result(
                "flood",
                f"rejected/s, {name}, vs do-nothing floor",
                f"{rate:.0f}/s, p99 {p99:.1f} ms",
                f"{floor_rate:.0f}/s, p99 {floor_p99:.1f} ms",
                ratio,
                f"≥ {RATE_TARGET}x, p99 ≤ {P99_TARGET}x",
                ok,
                f"rounds' ratios {min(round_ratios):.2f}-{max(round_ratios):.2f}x "
                f"({len(round_ratios)} A B pairs); /health p99 {p99_ratio:.2f}x the floor's; "
                f"answers per Synapse CPU-second {cpu_ratio:.2f}x the floor's "
                f"({med(name, 'per_synapse_cpu_s'):.0f} vs {med(FLOOR, 'per_synapse_cpu_s'):.0f}); "
                f"Synapse's /health alone {med(HEALTH, 'rate'):.0f}/s; other processes used "
                f"{med(name, 'others_cpu_per_s'):.2f} core meanwhile",
                {
                    "runs": figures[name],
                    "floor_runs": figures[FLOOR],
                    "health_runs": figures[HEALTH],
                    "round_ratios": round_ratios,
                    "p99_ratio": p99_ratio,
                },
            )
        )
    return results
