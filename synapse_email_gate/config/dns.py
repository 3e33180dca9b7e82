"""The DNS checks' configuration: `dns`, `dnsbl` and `mail_domain_check` (docs/rules.md)."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

import attrs

from synapse_email_gate.config.reader import Section, string_list
from synapse_email_gate.rules.dns import (
    DNSBL_ACTIONS,
    DnsblAction,
    ListingAnswers,
    normalise_zone,
    zone_problem,
)

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS


@attrs.frozen
class DnsConfig:
    """The resolver both checks use. No servers: the system's (/etc/resolv.conf)."""

    servers: tuple[tuple[str, int], ...] = ()
    timeout_ms: int = 1000

    @staticmethod
    def from_section(section: Section) -> DnsConfig:
        config = DnsConfig(
            servers=section.convert("servers", (), _servers),
            timeout_ms=section.duration_ms("timeout", 1000, minimum_ms=50),
        )
        if config.timeout_ms > 30_000:
            raise section.error("timeout", "must be at most 30s: a request waits for it")
        section.finish()
        return config


@attrs.frozen
class DnsblZone:
    zone: str
    action: DnsblAction
    answers: ListingAnswers = ListingAnswers()


@attrs.frozen
class DnsblConfig:
    """DNS blocklists asked about the client address; no zones: off."""

    zones: tuple[DnsblZone, ...] = ()
    cache_ttl_ms: int = _HOUR_MS
    negative_cache_ttl_ms: int = 5 * _MINUTE_MS

    @property
    def enabled(self) -> bool:
        return bool(self.zones)

    def uses(self, action: DnsblAction) -> bool:
        return any(zone.action == action for zone in self.zones)

    @staticmethod
    def from_section(section: Section) -> DnsblConfig:
        config = DnsblConfig(
            zones=_zones(section),
            cache_ttl_ms=section.duration_ms("cache_ttl", _HOUR_MS),
            negative_cache_ttl_ms=section.duration_ms("negative_cache_ttl", 5 * _MINUTE_MS),
        )
        section.finish()
        return config


@attrs.frozen
class MailDomainConfig:
    """The DNS check of an address's domain before a token is issued; off by default."""

    enabled: bool = False
    throwaway_mx: tuple[str, ...] = ()
    cache_ttl_ms: int = _HOUR_MS

    @staticmethod
    def from_section(section: Section) -> MailDomainConfig:
        config = MailDomainConfig(
            enabled=section.boolean("enabled", False),
            throwaway_mx=section.convert("throwaway_mx", (), _hosts),
            cache_ttl_ms=section.duration_ms("cache_ttl", _HOUR_MS),
        )
        section.finish()
        return config


def _zones(section: Section) -> tuple[DnsblZone, ...]:
    raw: Any = section.raw("zones", [])
    if not isinstance(raw, list):
        raise section.error("zones", f"expected a list of {{zone: ..., action: ...}}, got {raw!r}")
    zones = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        entry = Section(item, section.key(f"zones.{index}"))
        zone = normalise_zone(entry.string("zone", ""))
        problem = zone_problem(zone)
        if problem is not None:
            raise entry.error("zone", problem)
        if zone in seen:
            raise entry.error("zone", f"{zone!r} is listed twice")
        seen.add(zone)
        action = cast(DnsblAction, entry.choice("action", "refuse", DNSBL_ACTIONS))
        answers = entry.convert("answers", ListingAnswers(), _answers)
        entry.finish()
        zones.append(DnsblZone(zone, action, answers))
    return tuple(zones)


def _answers(value: object) -> ListingAnswers:
    return ListingAnswers.parse(string_list(value))


def _hosts(value: object) -> tuple[str, ...]:
    hosts = tuple(normalise_zone(entry) for entry in string_list(value))
    for host in hosts:
        problem = zone_problem(host)
        if problem is not None:
            raise ValueError(problem)
    return hosts


def _servers(value: object) -> tuple[tuple[str, int], ...]:
    return tuple(_server(entry) for entry in string_list(value))


def _server(entry: str) -> tuple[str, int]:
    """`127.0.0.1`, `127.0.0.1:5353`, `::1`, `[::1]:5353` -> (address, port)."""
    host, port = entry, 53
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{entry!r}: expected [address]:port")
            port = int(rest[1:])
    elif entry.count(":") == 1:
        host, _, text = entry.partition(":")
        if not text.isdigit():
            raise ValueError(f"{entry!r}: expected address:port")
        port = int(text)
    try:
        ipaddress.ip_address(host)
    except ValueError as e:
        raise ValueError(f"{entry!r}: expected an IP address (a name would need DNS itself)") from e
    if not 1 <= port <= 65535:
        raise ValueError(f"{entry!r}: port must be 1-65535")
    return (host, port)
