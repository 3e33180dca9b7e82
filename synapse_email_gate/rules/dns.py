"""DNS names and verdicts for the reputation checks; no resolver here.

- `reverse_address`: how a DNS blocklist is asked about an address (RFC 5782):
  the IPv4 octets reversed, or the 32 nibbles of an IPv6 address reversed, then
  the zone. An IPv4-mapped IPv6 address is asked as the IPv4 address.
- `ListingAnswers`: which answers of a zone mean "listed".
- `strictest`: the action that wins when several zones list an address.
- `mail_domain_problem`: what a domain's MX, A and AAAA records say about
  whether people receive mail there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

DnsblAction = Literal["refuse", "approval", "challenge"]
# Strictest first: refuse beats approval, approval beats the challenge.
DNSBL_ACTIONS: tuple[DnsblAction, ...] = ("refuse", "approval", "challenge")

# Zones answer in 127.0.0.0/8 (RFC 5782). 127.255.255.0/24 is where several
# (Spamhaus among them) answer errors such as "queried through a public
# resolver": never a listing.
_LISTING_BLOCK = ipaddress.ip_network("127.0.0.0/8")
_ERROR_BLOCK = ipaddress.ip_network("127.255.255.0/24")

# Why a domain takes no personal mail (reason codes in logs and metrics).
NO_MAIL_HOST = "no_mail_host"  # no MX, and no A or AAAA to fall back on (RFC 5321 5.1)
NULL_MX = "null_mx"  # "MX 0 ." (RFC 7505): the domain says it accepts no mail
THROWAWAY_MX = "throwaway_mx"  # its mail goes to a known throwaway provider


def reverse_address(ip: str) -> str | None:
    """`203.0.113.7` -> `7.113.0.203` (a zone's name follows), IPv6 in nibbles; None if
    no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))
    return ".".join(reversed(labels))


def normalise_zone(zone: str) -> str:
    """A zone or host name as compared here: lowercase, no trailing dot."""
    return zone.strip().rstrip(".").lower()


def zone_problem(zone: str) -> str | None:
    """Why `zone` cannot be a DNS zone name, or None."""
    if not zone:
        return "must not be empty"
    if len(zone) > 200:
        return "is too long for a zone (at most 200 characters, to leave room for the address)"
    for label in zone.split("."):
        if not label or len(label) > 63:
            return f"{zone!r} has an empty or too long label"
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return f"{zone!r} has characters other than letters, digits, '-' and '_'"
    return None


@attrs.frozen
class ListingAnswers:
    """The answers that list an address: `networks`, or else 127.0.0.0/8 outside
    127.255.255.0/24."""

    networks: tuple[ipaddress.IPv4Network, ...] = ()

    @staticmethod
    def parse(entries: Iterable[str]) -> ListingAnswers:
        networks = []
        for entry in entries:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError as e:
                raise ValueError(f"{entry!r} is not an IPv4 address or range") from e
            if not isinstance(network, ipaddress.IPv4Network):
                raise ValueError(f"{entry!r} is not an IPv4 address or range")
            networks.append(network)
        return ListingAnswers(tuple(networks))

    def lists(self, addresses: Iterable[str]) -> bool:
        """Whether any of a zone's A answers means "listed"."""
        for text in addresses:
            try:
                address = ipaddress.IPv4Address(text)
            except ValueError:
                continue
            if self.networks:
                if any(address in network for network in self.networks):
                    return True
            elif address in _LISTING_BLOCK and address not in _ERROR_BLOCK:
                return True
        return False


def strictest(actions: Iterable[DnsblAction]) -> DnsblAction | None:
    found = set(actions)
    for action in DNSBL_ACTIONS:
        if action in found:
            return action
    return None


@attrs.frozen
class MxRecord:
    preference: int
    host: str  # normalised; "" for the null MX's "."


class HostSuffixes:
    """Host names and their subdomains: `mx.example` matches `mx.example` and
    `eu.mx.example`, in one set lookup per label."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._names = frozenset(normalise_zone(e) for e in entries)

    def __bool__(self) -> bool:
        return bool(self._names)

    def matches(self, host: str) -> bool:
        labels = normalise_zone(host).split(".")
        return any(".".join(labels[i:]) in self._names for i in range(len(labels)))


def mail_domain_problem(
    mx: Sequence[MxRecord], has_address: bool, throwaway: HostSuffixes
) -> str | None:
    """Why the domain takes no personal mail, or None.

    `mx` are its MX records (none: the domain has none, or does not exist);
    `has_address` whether it has an A or AAAA record (asked only without MX).
    """
    if mx:
        # RFC 7505: a domain with a null MX must have no other; one is enough to say no.
        if any(record.host == "" for record in mx):
            return NULL_MX
        if throwaway and any(throwaway.matches(record.host) for record in mx):
            return THROWAWAY_MX
        return None
    return None if has_address else NO_MAIL_HOST
