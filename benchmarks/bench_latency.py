"""Request endpoint latency with 10,000 ban patterns loaded vs none.

Two Synapse processes with the module, the same but for the policy file (10,000
username patterns, or none), both running; sequential accepted requests
(distinct usernames and addresses) alternate between them request by request,
so drift on the machine hits both alike. Figure: median answer latency of
POST /_synapse/client/email_gate/api/request.
"""

from __future__ import annotations

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


def run(ctx: Context) -> list[Result]:
    smtp = ctx.smtp
    with_patterns = ctx.server(gate_config(ctx, smtp, patterns=True))
    without = ctx.server(gate_config(ctx, smtp, patterns=False))
    count = 60 if ctx.quick else 150
    runs: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for server in (with_patterns, without):
            server.start(timeout=120)
            warm_up(server)
        for run_no in range(ctx.runs):
            servers = {"with": with_patterns, "without": without}
            for label, samples in interleaved_latencies(servers, count, f"l{run_no}").items():
                runs[label].append(median(samples))
    finally:
        with_patterns.stop()
        without.stop()
    m, b = median(runs["with"]), median(runs["without"])
    say(f"    10,000 patterns: {spread(runs['with'])}")
    say(f"    no patterns:     {spread(runs['without'])}")
    ratio = m / b
    return [
        Result(
            "latency",
            "request latency, 10,000 patterns vs none",
            fmt_ms(m),
            fmt_ms(b),
            ratio,
            "≤ 1.3x",
            ratio <= 1.3,
            f"{count} sequential accepted requests per run and server, SQLite",
            runs,
        )
    ]
