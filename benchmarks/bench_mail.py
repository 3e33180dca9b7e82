"""Mail delivery: 1,000 queued mails to a local SMTP server, and reactor stalls.

One Synapse with the module (mail_sweep_interval 500ms) and the SMTP catcher
(aiosmtpd on 127.0.0.1). Each run writes 1,000 issued requests and their
queued token mails straight into the database, in one transaction, while
Synapse runs; the sweep finds them and sends them in batches over one SMTP
connection each. Figure: time from that commit to the 1,000th mail at the
catcher (the wait for the next sweep included). Meanwhile another process
polls /health every 5 ms: any answer slower than 50 ms is a reactor stall.
"""

from __future__ import annotations

import signal
import sqlite3
import time

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

MAILS = 1_000


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
    poller = start_loadgen("health", server.port, "--duration", "30", "--interval", "0.005")
    time.sleep(0.5)
    cpu0, busy0 = cpu_seconds(server.pid or 0), busy_cpu()
    start = time.monotonic()
    _queue(server, tag, MAILS)
    try:
        smtp.wait_for_messages(MAILS, timeout=25)
        elapsed = time.monotonic() - start
    except AssertionError:
        elapsed = float("inf")
    cpu = cpu_seconds(server.pid or 0) - cpu0
    machine = (busy_cpu() - busy0) / (time.monotonic() - start)
    time.sleep(0.2)
    poller.send_signal(signal.SIGTERM)
    health = finish(poller, 30)
    ours = sum(1 for m in smtp.messages if m.to.startswith(tag))
    return {
        "seconds": elapsed,
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
        try:
            server.start(timeout=120)
            warm_up(server)
            time.sleep(1.0)
            for run_no in range(ctx.runs):
                runs.append(_one_run(ctx, server, f"m{engine[0]}{run_no}x"))
        finally:
            server.stop()
        seconds = median([r["seconds"] for r in runs])
        worst = max(r["health_max_ms"] for r in runs)
        stalls = sum(r["stalls"] for r in runs)
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
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
                f"1,000 queued mails delivered ({engine})",
                f"{seconds:.2f} s, max stall {worst:.0f} ms",
                "—",
                None,
                "< 10 s, no stall > 50 ms",
                seconds < 10 and worst <= 50,
                f"/health polled every 5 ms by another process; {stalls} polls over 50 ms; "
                f"Synapse CPU {median([r['cpu_ms_per_mail'] for r in runs]):.2f} ms per mail",
                {"runs": runs},
            )
        )
    return results
