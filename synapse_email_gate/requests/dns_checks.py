"""The DNS checks of a request: blocklists for the client address, and the mail
domain of the address (docs/rules.md#dns-checks).

Twisted's resolver runs on Synapse's reactor: no thread, no blocking. Every
answer is kept in memory for its configured time, so a request whose answers
are known costs dictionary lookups and nothing else; concurrent questions for
the same name share one query (Twisted's resolver does that). Nothing here
ever refuses because DNS failed: a timeout, SERVFAIL or any other error lets
the request through (fail open), is counted in the metrics and logged at most
once a second per check. Failures are not cached: the next request asks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import attrs
from synapse.logging.context import make_deferred_yieldable
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.names import client, dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure

from synapse_email_gate import metrics
from synapse_email_gate.config.dns import DnsblConfig, DnsConfig, MailDomainConfig
from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.rules.dns import (
    NO_MAIL_HOST,
    DnsblAction,
    HostSuffixes,
    MxRecord,
    mail_domain_problem,
    normalise_zone,
    reverse_address,
    strictest,
)

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_MAX_CACHED = 100_000


@attrs.frozen
class Records:
    """A name's records of one type; `exists` is False for NXDOMAIN."""

    records: tuple[dns.RRHeader, ...]
    exists: bool = True


@attrs.frozen
class Failed:
    """No usable answer: `timeout`, `servfail` or `error`."""

    reason: str


Reply = Records | Failed


class Lookups:
    """Questions to DNS, each with the configured timeout, never raising."""

    def __init__(self, config: DnsConfig, reactor: IReactorTime) -> None:
        seconds = config.timeout_ms / 1000
        # One try per server, each `timeout` long: Twisted's default retries for a minute.
        if config.servers:
            self._resolver = client.Resolver(
                servers=list(config.servers), timeout=(seconds,), reactor=reactor
            )
        else:
            self._resolver = client.Resolver(
                resolv="/etc/resolv.conf", timeout=(seconds,), reactor=reactor
            )

    def ask(self, name: str, qtype: int) -> defer.Deferred[Reply]:
        """Fires with the Reply (never fails); await it with `wait`."""
        lookup: Callable[[str], defer.Deferred[Any]] = {
            dns.A: self._resolver.lookupAddress,
            dns.AAAA: self._resolver.lookupIPV6Address,
            dns.MX: self._resolver.lookupMailExchange,
        }[qtype]
        # maybeDeferred: a name the resolver cannot even encode fails like any other.
        d = defer.maybeDeferred(lookup, name)
        d.addCallbacks(_records, _failed, callbackArgs=(qtype,))
        return cast("defer.Deferred[Reply]", d)


async def wait(deferreds: Sequence[defer.Deferred[Reply]]) -> list[Reply]:
    gathered: defer.Deferred[list[Reply]] = defer.gatherResults(list(deferreds), consumeErrors=True)
    replies: list[Reply] = await make_deferred_yieldable(gathered)
    return replies


def _records(
    result: tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]], qtype: int
) -> Reply:
    answers, _, _ = result
    return Records(tuple(r for r in answers if r.type == qtype))


def _failed(failure: Failure) -> Reply:
    if failure.check(dns_error.DNSNameError):
        return Records((), exists=False)
    if failure.check(defer.TimeoutError, dns.DNSQueryTimeoutError):
        return Failed("timeout")
    if failure.check(dns_error.DNSServerError):
        return Failed("servfail")
    return Failed("error")


class TtlCache(Generic[K, V]):
    """Answers kept for a time each, at most _MAX_CACHED of them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl_ms: int) -> None:
        if ttl_ms <= 0:
            return
        if len(self._entries) >= _MAX_CACHED:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= _MAX_CACHED:
                self._entries.clear()
        self._entries[key] = (self._clock() + ttl_ms / 1000, value)


class FailureLog:
    """One line a second at most per check: a dead resolver must not flood the log."""

    def __init__(self, check: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._clock = clock
        self._last = 0.0
        self._unlogged = 0

    def failed(self, what: str, reason: str) -> None:
        """`what`: the zone or the mail domain (never the client address)."""
        now = self._clock()
        if now - self._last < 1.0:
            self._unlogged += 1
            return
        more = f" (and {self._unlogged} more since the last such line)" if self._unlogged else ""
        logger.warning(
            "%s: DNS %s asking %s; the request is let through (fail open)%s",
            self._check,
            reason,
            what,
            more,
        )
        self._last = now
        self._unlogged = 0


class Dnsbl:
    """The action the blocklists ask for a client address, or None."""

    def __init__(self, config: DnsblConfig, lookups: Lookups, server_name: str) -> None:
        self._zones = config.zones
        self._ttl = config.cache_ttl_ms
        self._negative_ttl = config.negative_cache_ttl_ms
        self._lookups = lookups
        self._server_name = server_name
        self._cache: TtlCache[str, bool] = TtlCache()
        self._hits = metrics.DNS_CACHE_HITS.labels(check="dnsbl", server_name=server_name)
        self._log = FailureLog("dnsbl")

    async def action(self, ip: str) -> DnsblAction | None:
        reversed_ip = reverse_address(ip)
        if reversed_ip is None:
            return None
        found: list[DnsblAction] = []
        missing = []
        for zone in self._zones:
            name = f"{reversed_ip}.{zone.zone}"
            listed = self._cache.get(name)
            if listed is None:
                missing.append((zone, name))
                continue
            if listed:
                found.append(zone.action)
        if len(missing) < len(self._zones):
            self._hits.inc(len(self._zones) - len(missing))
        if missing and "refuse" not in found:  # a known refusal needs no more answers
            replies = await wait([self._lookups.ask(name, dns.A) for _, name in missing])
            for (zone, name), reply in zip(missing, replies, strict=True):
                if isinstance(reply, Failed):
                    metrics.dnsbl_lookup(self._server_name, zone.zone, reply.reason)
                    metrics.dns_fail_open(self._server_name, "dnsbl", reply.reason)
                    self._log.failed(zone.zone, reply.reason)
                    continue
                listed = zone.answers.lists(
                    r.payload.dottedQuad()
                    for r in reply.records
                    if isinstance(r.payload, dns.Record_A)
                )
                metrics.dnsbl_lookup(
                    self._server_name, zone.zone, "listed" if listed else "not_listed"
                )
                self._cache.put(name, listed, self._ttl if listed else self._negative_ttl)
                if listed:
                    found.append(zone.action)
        return strictest(found)


class MailDomains:
    """Why an address's domain takes no personal mail (rules/dns.py), or None."""

    def __init__(self, config: MailDomainConfig, lookups: Lookups, server_name: str) -> None:
        self._throwaway = HostSuffixes(config.throwaway_mx)
        self._ttl = config.cache_ttl_ms
        self._lookups = lookups
        self._server_name = server_name
        self._cache: TtlCache[str, str] = TtlCache()  # domain -> problem, "" for none
        self._hits = metrics.DNS_CACHE_HITS.labels(check="mail_domain", server_name=server_name)
        self._log = FailureLog("mail_domain_check")

    async def problem(self, domain: str) -> str | None:
        domain = normalise_zone(domain)
        cached = self._cache.get(domain)
        if cached is not None:
            self._hits.inc()
            return cached or None
        result = await self._ask(domain)
        if isinstance(result, Failed):
            metrics.mail_domain_lookup(self._server_name, result.reason)
            metrics.dns_fail_open(self._server_name, "mail_domain", result.reason)
            self._log.failed(domain, result.reason)
            return None
        metrics.mail_domain_lookup(self._server_name, result or "ok")
        self._cache.put(domain, result, self._ttl)
        return result or None

    async def _ask(self, domain: str) -> str | Failed:
        """The problem ("" for none), or the failure that left it unknown."""
        (mx,) = await wait([self._lookups.ask(domain, dns.MX)])
        if isinstance(mx, Failed):
            return mx
        if not mx.exists:
            return NO_MAIL_HOST
        records = [
            MxRecord(
                r.payload.preference, normalise_zone(r.payload.name.name.decode("ascii", "replace"))
            )
            for r in mx.records
            if isinstance(r.payload, dns.Record_MX)
        ]
        if records:
            return mail_domain_problem(records, True, self._throwaway) or ""
        a, aaaa = await wait(
            [self._lookups.ask(domain, dns.A), self._lookups.ask(domain, dns.AAAA)]
        )
        if (isinstance(a, Records) and a.records) or (isinstance(aaaa, Records) and aaaa.records):
            return ""
        failed = a if isinstance(a, Failed) else aaaa
        if isinstance(failed, Failed):
            return failed
        return mail_domain_problem((), False, self._throwaway) or ""


def dns_checks(
    config: GateConfig, reactor: IReactorTime, server_name: str
) -> tuple[Dnsbl | None, MailDomains | None]:
    """The checks that are on; none of them, and no resolver, when both are off."""
    if not config.dnsbl.enabled and not config.mail_domain_check.enabled:
        return None, None
    lookups = Lookups(config.dns, reactor)
    return (
        Dnsbl(config.dnsbl, lookups, server_name) if config.dnsbl.enabled else None,
        MailDomains(config.mail_domain_check, lookups, server_name)
        if config.mail_domain_check.enabled
        else None,
    )
