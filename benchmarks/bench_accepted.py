"""Accepted requests per second: answer, token, rows and queued mail.

One Synapse with the module (10,000 patterns, look-alike folding off, generous
limits, the SMTP catcher attached) per database. The load generator sends
requests with distinct usernames and addresses for a fixed time; the figure
counts a request only once its work is done in the database (status `issued`:
registration token row, request row, reservation, address row, outbox row), so
the rate is
accepted requests / (time from the first request until the last one is issued).
The mails still being sent then are waited for (not counted) before the next
run, so that no run, the floor's included, shares the process with the one
before it.

The floor: the do-nothing module (benchmarks/floor_module.py) in the same
Synapse answering the same bodies 202 without any work; its floods alternate
with the module's runs (A B A B ..., the pair's order flipping each round).
Verdict: the accepted rate at least 0.25x the floor's, on both databases. The
Synapse process's CPU time per accepted request (from /proc/<pid>/stat) is
reported beside it, as is the floor's.
"""

from __future__ import annotations

import time

from common import (
    API_REQUEST,
    FLOOR_ACCEPT,
    Context,
    Result,
    cpu_seconds,
    finish,
    gate_config,
    load_generator,
    median,
    say,
    start_load,
    warm_up,
)

from tests.harness.synapse import SynapseServer

CONCURRENCY = 16
TARGET = 0.25


def _issued(server: SynapseServer, prefix: str) -> int:
    rows = server.query(
        "SELECT COUNT(*) FROM email_gate_requests WHERE localpart LIKE ? AND status = 'issued'",
        (prefix + "%",),
    )
    return int(rows[0][0])


def _one_run(server: SynapseServer, run_no: int, duration: float) -> dict[str, float]:
    prefix = f"acc{run_no}x"
    body = f'{{"username": "{prefix}{{n}}", "email": "{prefix}{{n}}@example.org"}}'
    cpu0 = cpu_seconds(server.pid or 0)
    start = time.monotonic()
    report = finish(
        start_load(server.port, API_REQUEST, body=body, duration=duration, concurrency=CONCURRENCY),
        duration + 60,
    )
    answered = time.monotonic()
    accepted = int(report["statuses"].get("202", 0))
    issued = 0
    deadline = answered + 120
    while time.monotonic() < deadline:
        issued = _issued(server, prefix)
        if issued >= accepted:
            break
        time.sleep(0.05)
    done = time.monotonic()
    cpu = cpu_seconds(server.pid or 0) - cpu0
    # The mails still go out after the last token: the next run (the floor's, say)
    # must not share the process with them.
    _wait_for_mails(server, deadline=time.monotonic() + 120)
    return {
        "cpu_ms_per_request": cpu * 1000 / max(1, issued),
        "accepted": accepted,
        "other": sum(n for code, n in report["statuses"].items() if code != "202"),
        "statuses": report["statuses"],
        "issued": issued,
        "answer_rate": accepted / report["elapsed"],
        "rate": issued / (done - start),
        "backlog_s": done - answered,
        "p50_ms": report["latency_ms"]["p50"],
    }


def _wait_for_mails(server: SynapseServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        queued = server.query("SELECT COUNT(*) FROM email_gate_outbox WHERE status = 'queued'")
        if int(queued[0][0]) == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("the accepted requests' mails were not all sent within 120 s")


def _floor_run(server: SynapseServer, run_no: int, duration: float) -> dict[str, float]:
    prefix = f"floor{run_no}x"
    body = f'{{"username": "{prefix}{{n}}", "email": "{prefix}{{n}}@example.org"}}'
    cpu0 = cpu_seconds(server.pid or 0)
    report = finish(
        start_load(
            server.port, FLOOR_ACCEPT, body=body, duration=duration, concurrency=CONCURRENCY
        ),
        duration + 60,
    )
    accepted = int(report["statuses"].get("202", 0))
    cpu = cpu_seconds(server.pid or 0) - cpu0
    return {
        "rate": accepted / report["elapsed"],
        "cpu_ms_per_request": cpu * 1000 / max(1, accepted),
        "other": sum(n for code, n in report["statuses"].items() if code != "202"),
    }


def run(ctx: Context) -> list[Result]:
    duration = 3.0 if ctx.quick else 5.0
    results = []
    for engine in ("sqlite", "postgres"):
        # Look-alikes off: the load generator numbers the usernames, and read with
        # digits as letters a few of them (3-6 of ~1,400 per run) hit a generated ban.
        config = gate_config(ctx, ctx.smtp, banned_usernames_lookalikes="off")
        server = ctx.server(config, postgres=engine == "postgres", floor=True)
        runs = []
        floors = []
        try:
            server.start(timeout=120)
            warm_up(server)
            for run_no in range(ctx.runs):
                if run_no % 2 == 0:
                    floors.append(_floor_run(server, run_no, duration))
                    runs.append(_one_run(server, run_no, duration))
                else:
                    runs.append(_one_run(server, run_no, duration))
                    floors.append(_floor_run(server, run_no, duration))
                time.sleep(1.0)
        finally:
            server.stop()
        floor_rate = median([f["rate"] for f in floors])
        floor_cpu = median([f["cpu_ms_per_request"] for f in floors])
        round_ratios = [r["rate"] / f["rate"] for r, f in zip(runs, floors, strict=True)]
        rate = median([r["rate"] for r in runs])
        answer_rate = median([r["answer_rate"] for r in runs])
        backlog = median([r["backlog_s"] for r in runs])
        refused = sum(r["other"] for r in runs)
        # wrk stops with requests in flight: the server may issue more than it answered.
        missing = sum(max(0, r["accepted"] - r["issued"]) for r in runs)
        each = ", ".join(f"{r['rate']:.0f}" for r in runs)
        say(
            f"    {engine}: {rate:.0f} issued/s (runs {each}); answers {answer_rate:.0f}/s, "
            f"last token {backlog:.2f} s after the last answer; answer p50 "
            f"{median([r['p50_ms'] for r in runs]):.1f} ms; {refused:.0f} not accepted, "
            f"{missing:.0f} not issued; Synapse CPU "
            f"{median([r['cpu_ms_per_request'] for r in runs]):.2f} ms per request"
        )
        if refused:
            say(f"    answers other than 202: {[r['statuses'] for r in runs]}")
        cpu_ms = median([r["cpu_ms_per_request"] for r in runs])
        floor_each = ", ".join(f"{f['rate']:.0f}" for f in floors)
        say(
            f"    {engine} floor: {floor_rate:.0f}/s (runs {floor_each}), Synapse CPU "
            f"{floor_cpu:.3f} ms per request; ratio {rate / floor_rate:.3f}x "
            f"(rounds {min(round_ratios):.3f}-{max(round_ratios):.3f}x)"
        )
        floor_refused = sum(f["other"] for f in floors)
        results.append(
            Result(
                "accepted",
                f"accepted requests/s ({engine}) vs do-nothing floor",
                f"{rate:.0f}/s, {cpu_ms:.2f} ms CPU each",
                f"{floor_rate:.0f}/s, {floor_cpu:.3f} ms CPU each",
                rate / floor_rate,
                f"≥ {TARGET}x",
                rate / floor_rate >= TARGET and not missing and not refused and not floor_refused,
                f"rounds' ratios {min(round_ratios):.3f}-{max(round_ratios):.3f}x "
                f"({len(round_ratios)} A B pairs); {load_generator()}, {CONCURRENCY} "
                f"connections, {duration:.0f} s; answers {answer_rate:.0f}/s; Synapse CPU "
                f"{cpu_ms:.2f} ms per accepted request (token, rows, mail), the floor's "
                f"{floor_cpu:.3f} ms",
                {"runs": runs, "floor_runs": floors, "round_ratios": round_ratios},
            )
        )
    return results
