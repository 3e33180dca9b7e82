"""Request cost vs stored history: 1,000 vs 1,000,000 stored requests.

Module: Synapse with the module on a database already holding N requests and N
addresses (inserted by one bulk SQL statement per table before Synapse starts;
schema from synapse_email_gate/storage/schema.py), on SQLite and on PostgreSQL; the two
servers of a database run side by side and sequential accepted requests
alternate between them request by request. Figure: median answer latency;
target: the median at 1,000,000 ≤ 1.2x the median at 1,000.

Baseline: the obvious design without a database, an append-only JSON log that
each request loads, scans (requests from the same IP in the last hour, from
the same address ever) and rewrites.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import (
    Context,
    Result,
    fmt_ms,
    gate_config,
    interleaved_latencies,
    median,
    say,
    spread,
    warm_up,
)

_HOUR_MS = 3_600_000


def _write_json_log(path: Path, rows: int) -> None:
    now = int(time.time() * 1000)
    step = max(1, 6 * 86_400_000 // rows)
    log = [
        {
            "id": f"seed{x}",
            "created_ts": now - x * step,
            "username": f"seeduser{x}",
            "email": f"seed{x}@example.org",
            "ip": f"10.{x // 65536 % 256}.{x // 256 % 256}.{x % 256}",
            "status": "registered",
        }
        for x in range(1, rows + 1)
    ]
    path.write_text(json.dumps(log))


def json_log_request(path: Path, username: str, email: str, ip: str) -> bool:
    """One request in the JSON-log design: load, scan, append, rewrite."""
    now = int(time.time() * 1000)
    with path.open(encoding="utf-8") as f:
        log = json.load(f)
    from_ip = sum(1 for r in log if r["ip"] == ip and r["created_ts"] > now - _HOUR_MS)
    used = any(r["email"] == email for r in log)
    taken = any(r["username"] == username for r in log)
    accepted = from_ip < 5 and not used and not taken
    log.append(
        {
            "id": f"r{now}",
            "created_ts": now,
            "username": username,
            "email": email,
            "ip": ip,
            "status": "received" if accepted else "refused",
        }
    )
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(log))
    return accepted


def _baseline(ctx: Context, small: int, big: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for rows in (small, big):
        path = ctx.tmp / f"log-{rows}.json"
        _write_json_log(path, rows)
        samples = []
        for i in range(ctx.runs):
            start = time.perf_counter()
            json_log_request(path, f"new{i}", f"new{i}@example.org", "192.0.2.1")
            samples.append(time.perf_counter() - start)
        out[str(rows)] = samples
        path.unlink()
    return out


def _module(ctx: Context, postgres: bool, small: int, big: int) -> dict[str, list[float]]:
    t0 = time.monotonic()
    servers = {
        rows: ctx.server(gate_config(ctx, ctx.smtp), postgres=postgres, seed_rows=rows)
        for rows in (small, big)
    }
    say(f"    seeded {small:,} and {big:,} stored requests in {time.monotonic() - t0:.0f} s")
    count = 60 if ctx.quick else 150
    out: dict[str, list[float]] = {str(small): [], str(big): []}
    try:
        for server in servers.values():
            server.start(timeout=300)
            warm_up(server)
        by_label = {str(rows): server for rows, server in servers.items()}
        for run_no in range(ctx.runs):
            for label, samples in interleaved_latencies(by_label, count, f"h{run_no}").items():
                out[label].append(median(samples))
    finally:
        for server in servers.values():
            server.stop()
    return out


def run(ctx: Context) -> list[Result]:
    small, big = 1_000, ctx.big_history
    results = []
    for engine in ("sqlite", "postgres"):
        figures = _module(ctx, engine == "postgres", small, big)
        m_small, m_big = median(figures[str(small)]), median(figures[str(big)])
        say(f"    {engine} at {small:,}: {spread(figures[str(small)])}")
        say(f"    {engine} at {big:,}: {spread(figures[str(big)])}")
        ratio = m_big / m_small
        results.append(
            Result(
                "history",
                f"request cost at {big:,} vs {small:,} stored ({engine})",
                f"{fmt_ms(m_big)} / {fmt_ms(m_small)}",
                "",
                ratio,
                "≤ 1.2x",
                ratio <= 1.2,
                "module: median answer latency at big / small history",
                figures,
            )
        )
    baseline = _baseline(ctx, small, big)
    b_small, b_big = median(baseline[str(small)]), median(baseline[str(big)])
    say(f"    JSON log at {small:,}: {spread(baseline[str(small)])}")
    say(f"    JSON log at {big:,}: {spread(baseline[str(big)])}")
    for result in results:
        result.baseline = f"{fmt_ms(b_big)} / {fmt_ms(b_small)} ({b_big / b_small:.0f}x)"
        result.data["json_log"] = baseline
    return results
