"""Mail delivery: 500 queued mails to a local SMTP server, and reactor stalls.

One Synapse with the module (mail_sweep_interval 500ms) and the SMTP catcher
(aiosmtpd on 127.0.0.1). Each run writes MAILS (500) issued requests and their
queued token mails straight into the database, in one transaction, while
Synapse runs; the sweep finds them and sends them in batches over one SMTP
connection each. Also reported: the time from that commit to the last mail at
the catcher (the wait for the next sweep included). Meanwhile another process
polls /health every 5 ms: any answer slower than 50 ms is a reactor stall.

The floor: benchmarks/raw_smtp.py, a plain script feeding the same catcher with
aiosmtplib (the same message bytes, batches of 50 per connection), its runs
alternating with the module's (A B A B ...). Both rates are taken the same way,
from the first mail's arrival at the catcher to the last one's (the module's
wait for its sweep is reported, not counted). Verdict: the module's rate at
least 0.8x the floor's, and no /health poll over 50 ms.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from common import (
    Context,
    Result,
    busy_cpu,
    cpu_seconds,
    finish,
    gate_config,
    median,
    say,
    start_loadgen,
    warm_up,
)

from tests.harness.synapse import SynapseServer

# Enough for a rate: the catcher parses every mail, and on a busy machine takes
# 30-60 mails/s (1,000 took up to 30 s per run).
MAILS = 500
WAIT_S = 120.0
TARGET = 0.8
RAW_SMTP = Path(__file__).resolve().parent / "raw_smtp.py"


def _arrivals(ctx: Context, tag: str, timeout: float) -> tuple[float, float, float]:
    """Poll the catcher until MAILS of ``tag`` are in: (first seen, last seen,
    monotonic clock), or inf for the last when they do not all come in time."""
    smtp = ctx.smtp
    deadline = time.monotonic() + timeout
    first = float("inf")
    while time.monotonic() < deadline:
        count = len(smtp.messages)
        now = time.monotonic()
        if count and first == float("inf"):
            first = now
        if count >= MAILS:
            return first, now, now
        time.sleep(0.002)
    return first, float("inf"), time.monotonic()


def _raw_run(ctx: Context, message: Path, tag: str) -> dict[str, float]:
    smtp = ctx.smtp
    smtp.clear()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(RAW_SMTP), "--host", smtp.host, "--port", str(smtp.port),
         "--count", str(MAILS), "--message", str(message), "--tag", tag],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first, last, _ = _arrivals(ctx, tag, WAIT_S)
    finally:
        out, err = proc.communicate(timeout=WAIT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"raw_smtp.py failed: {err[-2000:]!r}")
    span = last - first
    return {
        "seconds": last - start,
        "rate": (MAILS - 1) / span if span > 0 else 0.0,
        "script_s": float(json.loads(out.decode().splitlines()[-1])["seconds"]),
    }


def _queue(server: SynapseServer, tag: str, count: int) -> None:
    now = int(time.time() * 1000)
    requests = [
        (
            f"{tag}r{i}",
            now,
            now,
            f"{tag}u{i}",
            f"{tag}u{i}@example.org",
            f"{tag}u{i}@example.org",
            "127.0.0.1",
            "en",
            "issued",
            f"{tag}tok{i}",
            now + 86_400_000,
        )
        for i in range(count)
    ]
    mails = [(f"{tag}o{i}", f"{tag}r{i}", now, now) for i in range(count)]
    insert_request = """
        INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,
            email_key, ip, lang, status, token, expires_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    """
    insert_mail = """
        INSERT INTO email_gate_outbox (id, request_id, kind, recipient, status, created_ts,
            attempts, next_attempt_ts, lease_until_ts)
        VALUES (?, ?, 'token', NULL, 'queued', ?, 0, ?, 0)
    """
    if server.postgres is not None:
        assert server.db_name is not None
        conn = server.postgres.connect(server.db_name)
        try:
            with conn.cursor() as cur:
                cur.executemany(insert_request.replace("?", "%s"), requests)
                cur.executemany(insert_mail.replace("?", "%s"), mails)
            conn.commit()
        finally:
            conn.close()
        return
    lite = sqlite3.connect(server.config["database"]["args"]["database"], timeout=30)
    try:
        with lite:
            lite.executemany(insert_request, requests)
            lite.executemany(insert_mail, mails)
    finally:
        lite.close()


def _one_run(ctx: Context, server: SynapseServer, tag: str) -> dict[str, float]:
    smtp = ctx.smtp
    smtp.clear()
    poller = start_loadgen(
        "health", server.port, "--duration", str(WAIT_S + 10), "--interval", "0.005"
    )
    time.sleep(0.5)
    cpu0, busy0 = cpu_seconds(server.pid or 0), busy_cpu()
    start = time.monotonic()
    _queue(server, tag, MAILS)
    first, last, _ = _arrivals(ctx, tag, WAIT_S)
    elapsed = last - start
    span = last - first
    cpu = cpu_seconds(server.pid or 0) - cpu0
    machine = (busy_cpu() - busy0) / (time.monotonic() - start)
    time.sleep(0.2)
    poller.send_signal(signal.SIGTERM)
    health = finish(poller, 30)
    ours = sum(1 for m in smtp.messages if m.to.startswith(tag))
    return {
        "seconds": elapsed,
        "rate": (MAILS - 1) / span if span > 0 and span != float("inf") else 0.0,
        "first_s": first - start,
        "delivered": ours,
        "health_max_ms": health["latency_ms"]["max"],
        "health_p99_ms": health["latency_ms"]["p99"],
        "stalls": health["over_stall"],
        "polls": health["requests"],
        "cpu_ms_per_mail": cpu * 1000 / max(1, ours),
        "machine_busy_cores": machine,
    }


def run(ctx: Context) -> list[Result]:
    results = []
    for engine in ("sqlite", "postgres"):
        server = ctx.server(
            gate_config(ctx, ctx.smtp, mail_sweep_interval="500ms"),
            postgres=engine == "postgres",
        )
        runs = []
        raws = []
        message = ctx.tmp / "token-mail.eml"
        try:
            server.start(timeout=120)
            ctx.smtp.clear()
            warm_up(server)
            message.write_bytes(ctx.smtp.wait_for_messages(1, timeout=30)[0].raw)
            time.sleep(1.0)
            for run_no in range(ctx.runs):
                tag = f"m{engine[0]}{run_no}x"
                if run_no % 2 == 0:
                    raws.append(_raw_run(ctx, message, tag + "raw"))
                    runs.append(_one_run(ctx, server, tag))
                else:
                    runs.append(_one_run(ctx, server, tag))
                    raws.append(_raw_run(ctx, message, tag + "raw"))
        finally:
            server.stop()
        rate = median([r["rate"] for r in runs])
        raw_rate = median([r["rate"] for r in raws])
        round_ratios = [
            r["rate"] / w["rate"] if w["rate"] else 0.0 for r, w in zip(runs, raws, strict=True)
        ]
        seconds = median([r["seconds"] for r in runs])
        worst = max(r["health_max_ms"] for r in runs)
        stalls = sum(r["stalls"] for r in runs)
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        say(
            f"    {engine}: raw aiosmtplib script {raw_rate:.0f} mails/s (runs "
            f"{', '.join(str(round(w['rate'])) for w in raws)}); module {rate:.0f} mails/s "
            f"from first to last (runs {', '.join(str(round(r['rate'])) for r in runs)}), "
            f"first mail {median([r['first_s'] for r in runs]):.2f} s after the commit"
        )
        say(
            f"    {engine}: {MAILS} mails in {seconds:.2f} s (runs {each}); /health max "
            f"{median([r['health_max_ms'] for r in runs]):.1f} ms median, {worst:.1f} ms worst, "
            f"p99 {median([r['health_p99_ms'] for r in runs]):.1f} ms; "
            f"{stalls} polls over 50 ms of {sum(r['polls'] for r in runs)}; Synapse CPU "
            f"{median([r['cpu_ms_per_mail'] for r in runs]):.2f} ms per mail; machine busy "
            f"{median([r['machine_busy_cores'] for r in runs]):.2f} of 2 cores"
        )
        results.append(
            Result(
                "mail",
                f"mails/s ({engine}) vs raw aiosmtplib script, same sink",
                f"{rate:.0f}/s, max stall {worst:.0f} ms",
                f"{raw_rate:.0f}/s",
                rate / raw_rate if raw_rate else None,
                f"≥ {TARGET}x, no stall > 50 ms",
                bool(raw_rate) and rate / raw_rate >= TARGET and worst <= 50,
                f"rounds' ratios {min(round_ratios):.2f}-{max(round_ratios):.2f}x "
                f"({len(round_ratios)} A B pairs); {MAILS} mails in {seconds:.2f} s from the "
                f"commit (sweep wait included); /health polled every 5 ms by another process, "
                f"{stalls} polls over 50 ms; Synapse CPU "
                f"{median([r['cpu_ms_per_mail'] for r in runs]):.2f} ms per mail",
                {"runs": runs, "raw_runs": raws, "round_ratios": round_ratios},
            )
        )
    return results
