"""IP address rules (``banned_ips``, ``trusted_proxies``) and the client's address.

Entries are IPv4/IPv6 addresses or CIDR networks.  A network written with
host bits set (``198.51.100.7/24``) is accepted and normalised to the
network it names (``198.51.100.0/24``): that is what a moderator pasting an
address plus a prefix means, and refusing it would only make a ban fail to
load.

IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``, what a dual-stack listener
reports for IPv4 peers) are treated as the IPv4 address everywhere, in
entries and in lookups, so an IPv4 ban holds whichever way the socket saw
the peer.

Lookups cost one dict probe per distinct prefix length in use (at most 33
for IPv4, 129 for IPv6), however many entries there are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import attrs

__all__ = ["IpAddress", "IpRuleError", "IpRules", "client_ip", "network_of", "parse_ip"]

IpAddress = IPv4Address | IPv6Address
_Network = IPv4Network | IPv6Network

_MAPPED_V4 = IPv6Network("::ffff:0:0/96")
_ALL_V4 = IPv4Network("0.0.0.0/0")


class IpRuleError(ValueError):
    """An entry is not an address or network.  The message names the entry."""


def _ipv4_value(text: str) -> int | None:
    """``text`` as an IPv4 address's number when written the plain way
    (``198.51.100.7``: four decimal parts of 0-255, no leading zeros), else None.
    It accepts exactly what ``ipaddress`` accepts in that form, at a fraction of its
    cost: every request of a flood parses its peer and its forwarded hops."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
            return None
        if part[0] == "0" and len(part) > 1:
            return None
        number = int(part)
        if number > 255:
            return None
        value = value << 8 | number
    return value


def _canonical(text: str) -> tuple[str, int, int] | None:
    """(the address written canonically, its version, its number), or None when
    ``text`` is not an address. Remembered for the last few thousand texts: a
    request reads its peer, its forwarded hops and its client address again."""
    if text in _CANONICAL:
        return _CANONICAL[text]
    if len(_CANONICAL) >= _CANONICAL_SIZE:
        _CANONICAL.clear()
    found = _CANONICAL[text] = _read_address(text)
    return found


_CANONICAL: dict[str, tuple[str, int, int] | None] = {}
_CANONICAL_SIZE = 4096


def _read_address(text: str) -> tuple[str, int, int] | None:
    value = _ipv4_value(text)
    if value is not None:
        return text, 4, value
    address = parse_ip(text)
    if address is None:
        return None
    return str(address), address.version, int(address)


def parse_ip(text: str) -> IpAddress | None:
    """``text`` as an address (IPv4-mapped IPv6 unmapped), or ``None``."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def network_of(text: str, ipv4_prefix: int, ipv6_prefix: int) -> str | None:
    """The network ``text`` is in (``198.51.100.0/24``), for limits and counts per
    network; ``None`` when ``text`` is not an address."""
    address = parse_ip(text)
    if address is None:
        return None
    prefix = ipv4_prefix if isinstance(address, IPv4Address) else ipv6_prefix
    return str(ipaddress.ip_network((address, prefix), strict=False))


def _unmapped(network: _Network) -> list[_Network]:
    """``network``, with its IPv4-mapped part (if any) expressed as IPv4."""
    if not isinstance(network, IPv6Network):
        return [network]
    if network.subnet_of(_MAPPED_V4):
        host_bits = int(network.network_address) & 0xFFFF_FFFF
        return [IPv4Network((host_bits, network.prefixlen - 96))]
    if network.supernet_of(_MAPPED_V4):
        return [network, _ALL_V4]
    return [network]


def _parse_entry(entry: str) -> list[_Network]:
    try:
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise IpRuleError(
            f"entry {entry!r}: not an IP address or CIDR network (like 203.0.113.7, "
            "198.51.100.0/24 or 2001:db8::/32)"
        ) from None
    return _unmapped(network)


# One lookup table per prefix length: (prefix length, netmask as int,
# {network address as int: entry}), most specific first.
_Table = tuple[tuple[int, int, dict[int, str]], ...]


def _table(networks: Iterable[tuple[_Network, str]]) -> _Table:
    by_length: dict[int, tuple[int, dict[int, str]]] = {}
    for network, entry in networks:
        _, found = by_length.setdefault(network.prefixlen, (int(network.netmask), {}))
        found.setdefault(int(network.network_address), entry)
    return tuple(
        (length, mask, found) for length, (mask, found) in sorted(by_length.items(), reverse=True)
    )


def _lookup(table: _Table, address: int) -> str | None:
    for _, mask, found in table:
        entry = found.get(address & mask)
        if entry is not None:
            return entry
    return None


@attrs.frozen
class IpRules:
    """A set of addresses and networks, e.g. ``banned_ips`` or ``trusted_proxies``."""

    entries: tuple[str, ...]
    v4: _Table = attrs.field(repr=False)
    v6: _Table = attrs.field(repr=False)

    @classmethod
    def compile(cls, entries: Sequence[str]) -> IpRules:
        """Compile ``entries``; :class:`IpRuleError` names the first bad one."""
        v4: list[tuple[_Network, str]] = []
        v6: list[tuple[_Network, str]] = []
        for entry in entries:
            for network in _parse_entry(entry):
                (v4 if network.version == 4 else v6).append((network, entry))
        return cls(tuple(entries), _table(v4), _table(v6))

    @classmethod
    def empty(cls) -> IpRules:
        return cls((), (), ())

    def __len__(self) -> int:
        return len(self.entries)

    def first_match(self, ip: str) -> str | None:
        """The most specific entry covering ``ip``; ``None`` also if ``ip`` is not an IP."""
        address = _canonical(ip)
        return None if address is None else self._first_match_number(address[1], address[2])

    def _first_match_number(self, version: int, value: int) -> str | None:
        return _lookup(self.v4 if version == 4 else self.v6, value)

    def matches(self, ip: str) -> bool:
        return self.first_match(ip) is not None


def _strip_port(hop: str) -> str:
    """``1.2.3.4:5678`` -> ``1.2.3.4``, ``[2001:db8::1]:443`` -> ``2001:db8::1``."""
    hop = hop.strip()
    if hop.startswith("["):
        end = hop.find("]")
        return hop[1:end] if end != -1 else hop
    if hop.count(":") == 1:  # IPv4 with a port; bare IPv6 has two or more colons
        return hop.partition(":")[0]
    return hop


def client_ip(peer: str, forwarded_for_headers: Sequence[str], trusted: IpRules) -> str:
    """The address to hold responsible for a request.

    X-Forwarded-For is only believed when the direct ``peer`` is a trusted
    proxy; otherwise it is ignored, so a client cannot spoof its address.
    When believed, hops are read right to left (each proxy appends the
    address it saw), skipping trusted proxies, and the first untrusted hop
    is the client.  A hop that is not an address ends the walk at the last
    good one, since nothing left of it can be trusted either.  Never raises.

    The result is normalised (``::ffff:1.2.3.4`` -> ``1.2.3.4``); a peer that
    is not an IP at all (a UNIX socket) is returned unchanged.
    """
    peer_address = _canonical(peer)
    if peer_address is None:
        return peer
    last_good = peer_address
    if trusted._first_match_number(last_good[1], last_good[2]) is None:
        return last_good[0]
    hops = ",".join(forwarded_for_headers).split(",")
    for hop in reversed(hops):
        if not hop.strip():
            continue
        address = _canonical(_strip_port(hop))
        if address is None:
            break
        last_good = address
        if trusted._first_match_number(address[1], address[2]) is None:
            break
    return last_good[0]
