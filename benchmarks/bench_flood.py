"""Rejected requests per second on one Synapse process, with /health beside them.

One Synapse with the module (10,000 username patterns, a banned network, a
per-IP limit of 2 requests). X-Forwarded-For is trusted from 127.0.0.1, so the
load generator speaks for one client per scenario:

- rate limited: a client whose per-IP bucket is empty (answered 429),
- IP banned: a client in the banned network (403),
- username banned: a name matching a ban pattern (400).

While each flood runs, another process polls /health every 10 ms on its own
connection; its p99 must stay under 50 ms. Baseline: the same load generator
flooding Synapse's own /health on the same process, i.e. what Synapse's HTTP
stack alone does per second on this machine.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from common import (
    API_REQUEST,
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


def run(ctx: Context) -> list[Result]:
    server = ctx.server(gate_config(ctx, None, per_ip={"burst": 2, "per_second": 0.001}))
    duration = 2.0 if ctx.quick else 3.0
    scenarios: list[tuple[str, str, dict[str, Any]]] = [
        ("/health (Synapse alone)", "200", {"path": "/health", "method": "GET"}),
        (
            "rate limited",
            "429",
            {
                "path": API_REQUEST,
                "body": request_body("flooder", "flooder@example.org"),
                "header": "X-Forwarded-For: 198.51.100.7",
            },
        ),
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
    figures: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in scenarios}
    try:
        server.start(timeout=120)
        warm_up(server, count=2)
        # Empty the flooding client's bucket so the flood meets the limit at once.
        for _ in range(3):
            _flood(server.pid or 0, server.port, 1.0, concurrency=1, **scenarios[1][2])
        for _ in range(ctx.runs):
            for name, expected, load in scenarios:
                figure = _flood(
                    server.pid or 0, server.port, duration, concurrency=CONCURRENCY, **load
                )
                statuses = figure.pop("statuses")
                assert isinstance(statuses, dict)
                figure["non_expected"] = sum(n for code, n in statuses.items() if code != expected)
                figures[name].append(figure)
                time.sleep(0.3)
    finally:
        server.stop()

    def med(name: str, key: str) -> float:
        return median([f[key] for f in figures[name]])

    base = med("/health (Synapse alone)", "rate")
    say(f"    load generator: {load_generator()}, {CONCURRENCY} connections, {duration:.0f} s runs")
    results = []
    for name, _, _ in scenarios:
        rate, p99 = med(name, "rate"), med(name, "health_p99_ms")
        say(
            f"    {name:<24} {rate:7.0f}/s  (runs {min(f['rate'] for f in figures[name]):.0f}-"
            f"{max(f['rate'] for f in figures[name]):.0f}); /health p99 {p99:.1f} ms, "
            f"max {med(name, 'health_max_ms'):.1f} ms; Synapse CPU "
            f"{med(name, 'synapse_cpu_per_s'):.2f} core, {med(name, 'per_synapse_cpu_s'):.0f} "
            f"answers per Synapse CPU-second; other processes {med(name, 'others_cpu_per_s'):.2f}"
            f" core; unexpected answers {sum(f['non_expected'] for f in figures[name]):.0f}"
        )
        if name.startswith("/health"):
            continue
        ok = rate >= 2000 and p99 < 50 and not any(f["non_expected"] for f in figures[name])
        results.append(
            Result(
                "flood",
                f"rejected/s, {name}",
                f"{rate:.0f}/s, p99 {p99:.0f} ms",
                f"{base:.0f}/s /health",
                rate / base,
                "≥ 2000/s, p99 < 50 ms",
                ok,
                f"{med(name, 'per_synapse_cpu_s'):.0f} answers per Synapse CPU-second; "
                f"other processes used {med(name, 'others_cpu_per_s'):.2f} core meanwhile",
                {"runs": figures[name], "health_runs": figures["/health (Synapse alone)"]},
            )
        )
    return results
