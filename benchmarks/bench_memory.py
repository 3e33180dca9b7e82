"""Memory the module adds to a Synapse process.

Two Synapse processes on SQLite databases holding 1,000,000 stored requests:
one with the module and 10,000 username patterns, one without the module.
Both get the same warm-up through Synapse's client API; the module's also
answers 50 accepted requests, 20 refused ones and 10 page views. RSS (VmRSS)
is read 3 s after the warm-up; each run starts both processes afresh.
"""

from __future__ import annotations

import time

from common import (
    API_REQUEST,
    GATE,
    Client,
    Context,
    Result,
    gate_config,
    median,
    rss_mb,
    say,
    timed_requests,
)

from tests.harness.synapse import SynapseServer


def _synapse_warm_up(server: SynapseServer) -> None:
    client = Client(server.port)
    try:
        for _ in range(10):
            client.request("GET", "/health")
            client.request("GET", "/_matrix/client/versions")
            client.request("POST", "/_matrix/client/v3/register", {"username": "nobody"})
    finally:
        client.close()


def _module_warm_up(server: SynapseServer, run_no: int) -> None:
    timed_requests(server, 50, f"mem{run_no}x")
    client = Client(server.port)
    try:
        for i in range(10):
            client.request("GET", GATE + "/")
            client.request("POST", API_REQUEST, {"username": "", "email": "x"})
            client.request(
                "POST",
                API_REQUEST,
                {"username": f"mem{run_no}b{i}", "email": "x@example.org"},
                {"X-Forwarded-For": "203.0.113.5"},
            )
    finally:
        client.close()


def run(ctx: Context) -> list[Result]:
    rows = ctx.big_history
    t0 = time.monotonic()
    with_module = ctx.server(gate_config(ctx, ctx.smtp), seed_rows=rows)
    without = ctx.server(None, seed_rows=rows)
    say(f"    two databases with {rows:,} stored requests ready in {time.monotonic() - t0:.0f} s")
    runs: dict[str, list[float]] = {"module": [], "plain": []}
    for run_no in range(ctx.runs):
        try:
            with_module.start(timeout=300)
            without.start(timeout=300)
            for server in (with_module, without):
                _synapse_warm_up(server)
            _module_warm_up(with_module, run_no)
            time.sleep(3.0)
            runs["module"].append(rss_mb(with_module.pid or 0))
            runs["plain"].append(rss_mb(without.pid or 0))
        finally:
            with_module.stop()
            without.stop()
    added = [m - p for m, p in zip(runs["module"], runs["plain"], strict=True)]
    m, p, a = median(runs["module"]), median(runs["plain"]), median(added)
    say(
        f"    RSS with the module {m:.1f} MB, without {p:.1f} MB; added {a:.1f} MB "
        f"(runs {', '.join(f'{x:.1f}' for x in added)})"
    )
    return [
        Result(
            "memory",
            f"RSS added by the module (10,000 patterns, {rows:,} stored)",
            f"+{a:.1f} MB ({m:.0f} MB)",
            f"{p:.0f} MB",
            m / p,
            "≤ 50 MB added",
            a <= 50,
            "VmRSS 3 s after the warm-up, fresh processes each run",
            {"module_mb": runs["module"], "plain_mb": runs["plain"], "added_mb": added},
        )
    ]
