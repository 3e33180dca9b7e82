"""Request latency with the DNS checks on (answers cached) vs off.

Two Synapse processes with the module, the same but for the DNS checks: one
with three blocklist zones and the mail-domain check, asking the test DNS
server (tests/harness/dns.py) on loopback, one without any. After the warm-up
every answer the first needs is in its cache (the client address is not listed,
example.org has an MX), so a request costs it memory lookups only. Sequential
accepted requests alternate between the two, request by request. Figure:
median answer latency of POST /_synapse/client/email_gate/api/request.
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

from tests.harness.dns import dns_server

ZONES = ("refuse.bl.bench", "challenge.bl.bench", "approval.bl.bench")


def run(ctx: Context) -> list[Result]:
    smtp = ctx.smtp
    count = 60 if ctx.quick else 150
    runs: dict[str, list[float]] = {"on": [], "off": []}
    with dns_server() as dns:
        dns.mx("example.org", (10, "mx.example.org"))
        checks = {
            "dns": {"servers": [dns.address], "timeout": "1s"},
            "dnsbl": {
                "zones": [
                    {"zone": zone, "action": action}
                    for zone, action in zip(ZONES, ("refuse", "challenge", "approval"), strict=True)
                ]
            },
            "mail_domain_check": {"enabled": True},
        }
        on = ctx.server(gate_config(ctx, smtp, patterns=False, **checks))
        off = ctx.server(gate_config(ctx, smtp, patterns=False))
        try:
            for server in (on, off):
                server.start(timeout=120)
                warm_up(server)
            asked = sum(dns.queries(f"1.0.0.127.{zone}") for zone in ZONES)
            for run_no in range(ctx.runs):
                servers = {"on": on, "off": off}
                for label, samples in interleaved_latencies(servers, count, f"d{run_no}").items():
                    runs[label].append(median(samples))
            # Cached: the measured requests asked DNS nothing.
            assert sum(dns.queries(f"1.0.0.127.{zone}") for zone in ZONES) == asked
        finally:
            on.stop()
            off.stop()
    m, b = median(runs["on"]), median(runs["off"])
    say(f"    DNS checks on, cached: {spread(runs['on'])}")
    say(f"    DNS checks off:        {spread(runs['off'])}")
    ratio = m / b
    return [
        Result(
            "dns",
            "request latency, DNS checks on (cached) vs off",
            fmt_ms(m),
            fmt_ms(b),
            ratio,
            "≤ 1.1x",
            ratio <= 1.1,
            f"{count} sequential accepted requests per run and server, "
            "3 zones and the mail-domain check, SQLite",
            runs,
        )
    ]
