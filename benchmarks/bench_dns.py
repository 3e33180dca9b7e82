"""Request latency with the DNS checks on (answers cached) vs off.

Two Synapse processes with the module, the same but for the DNS checks: one
with three blocklist zones and the mail-domain check, asking the test DNS
server (tests/harness/dns.py) on loopback, one without any. After the warm-up
every answer the first needs is in its cache (the client address is not listed,
example.org has an MX), so a request costs it memory lookups only. Sequential
accepted requests alternate between the two, request by request. Figure:
median answer latency of POST /_synapse/client/email_gate/api/request.

HTTP latency on a busy machine is noisy, so the cached checks are also timed
alone, in this process: the blocklist verdict (three zones) and the
mail-domain verdict from a filled cache, per request.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

from common import (
    Context,
    Result,
    fmt_ms,
    fmt_us,
    gate_config,
    interleaved_latencies,
    median,
    say,
    spread,
    warm_up,
)

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.requests.dns_checks import dns_checks
from tests.harness.dns import dns_server

ZONES = ("refuse.bl.bench", "challenge.bl.bench", "approval.bl.bench")


def _result(coro: Coroutine[Any, Any, Any]) -> Any:
    """The value of a coroutine that awaits nothing (every answer is cached)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the check waited for DNS: the cache was not filled")


def cached_cost(ctx: Context) -> list[float]:
    """Seconds per request for both cached verdicts, one figure per run."""
    from twisted.internet import reactor

    config = GateConfig.parse(
        {
            "dns": {"servers": ["127.0.0.1:9"]},
            "dnsbl": {"zones": [{"zone": zone} for zone in ZONES]},
            "mail_domain_check": {"enabled": True},
        }
    )
    dnsbl, mail_domains = dns_checks(config, reactor, "bench.local")
    assert dnsbl is not None and mail_domains is not None
    # Filled by hand (as a first lookup would): nothing here may ask DNS.
    for zone in ZONES:
        dnsbl._cache.put(f"7.113.0.203.{zone}", False, 3_600_000)
    mail_domains._cache.put("example.org", "", 3_600_000)
    rounds = 20_000 if ctx.quick else 100_000
    figures = []
    for _ in range(ctx.runs):
        start = time.perf_counter()
        for _ in range(rounds):
            assert _result(dnsbl.action("203.0.113.7")) is None
            assert _result(mail_domains.problem("example.org")) is None
        figures.append((time.perf_counter() - start) / rounds)
    return figures


def run(ctx: Context) -> list[Result]:
    cost = cached_cost(ctx)
    say(f"    cached verdicts alone: {spread(cost, 1e6, 'µs')}")
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
            "cached DNS verdicts per request (3 zones + mail domain), in process (context)",
            fmt_us(median(cost)),
            "—",
            None,
            "context (the verdict is the latency ratio below)",
            None,
            "no HTTP, no Synapse: the part of a request the checks add once cached",
            {"seconds": cost},
        ),
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
        ),
    ]
