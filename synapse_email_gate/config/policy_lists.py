"""The rule lists moderators edit: in homeserver.yaml and, reloadable, in `policy_file`.

Both places use the same keys and this one parser, so an entry that is valid in
one is valid in the other. Lists are validated by compiling them, so a bad
pattern is refused with the key and the entry named.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping, Sequence

import attrs

from synapse_email_gate.config.reader import Section
from synapse_email_gate.rules.addresses import DomainAllowList, EmailRules
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.usernames import LOOKALIKE_MODES, UsernamePatterns


@attrs.frozen
class Bucket:
    """A rate-limit bucket: at most `burst` credits (requests at once), refilled at
    `per_second` credits a second."""

    burst: int
    per_second: float

    @staticmethod
    def from_section(section: Section, default: Bucket) -> Bucket:
        bucket = Bucket(
            burst=section.integer("burst", default.burst, minimum=1),
            per_second=section.number("per_second", default.per_second, minimum=0.0),
        )
        section.finish()
        return bucket


# Safe for a public server: one IP gets 5 mails at once and then one every
# 12 minutes (5 an hour); one address 2 at once then one an hour (the cooldown
# usually bites first); the whole server 100 at once then one every 2 seconds.
DEFAULT_PER_IP = Bucket(burst=5, per_second=5 / 3600)
DEFAULT_PER_EMAIL = Bucket(burst=2, per_second=1 / 3600)
DEFAULT_GLOBAL = Bucket(burst=100, per_second=0.5)
# Unless set, the limit per mail domain (its registrable part) is half the global
# one: no single domain, however big, takes more than half of what the server hands
# out. The limit per network (an IPv4 /24, an IPv6 /48) is ten clients' worth of
# `per_ip`: room for a campus or a carrier NAT, not for a range rotated through.
# Neither is ever below FLOOR (50 at once, then 50 an hour), so a server with small
# limits is not held back by these two. Both follow the limit they derive from
# when only that one is changed.
DOMAIN_SHARE_OF_GLOBAL = 0.5
NETWORK_CLIENTS = 10
FLOOR = Bucket(burst=50, per_second=50 / 3600)
DEFAULT_IPV4_NETWORK_PREFIX = 24
DEFAULT_IPV6_NETWORK_PREFIX = 48
# The web finish page, per person (their address, not the server's): 5 attempts
# that reach Synapse at once, then one every 10 minutes.
DEFAULT_WEB_REGISTRATION = Bucket(burst=5, per_second=1 / 600)


# Config key of each bucket -> RateLimits attribute.
_BUCKETS = {
    "per_ip": "per_ip",
    "per_email": "per_email",
    "global": "global_",
    "web_registration": "web_registration",
    "per_email_domain": "per_email_domain",
    "per_network": "per_network",
}
# Config keys of the prefix lengths that make a network for `per_network`.
_PREFIXES = ("ipv4_network_prefix", "ipv6_network_prefix")


@attrs.frozen
class RateLimits:
    per_ip: Bucket = DEFAULT_PER_IP
    per_email: Bucket = DEFAULT_PER_EMAIL
    global_: Bucket = DEFAULT_GLOBAL
    web_registration: Bucket = DEFAULT_WEB_REGISTRATION
    # None: derived (`email_domain_limit`, `network_limit`).
    per_email_domain: Bucket | None = None
    per_network: Bucket | None = None
    ipv4_network_prefix: int = DEFAULT_IPV4_NETWORK_PREFIX
    ipv6_network_prefix: int = DEFAULT_IPV6_NETWORK_PREFIX
    # The (bucket, value) pairs the section wrote, e.g. ("global", "burst"); the
    # other values are the defaults here, and keep the lower layer's in `over`.
    given: frozenset[tuple[str, str]] = attrs.field(default=frozenset(), eq=False)

    @staticmethod
    def from_section(section: Section) -> RateLimits:
        given = set()
        for name in _BUCKETS:
            raw = section.raw(name)
            if isinstance(raw, Mapping):
                given |= {(name, value) for value in ("burst", "per_second") if value in raw}
        given |= {(name, "") for name in _PREFIXES if section.raw(name) is not None}
        per_ip = Bucket.from_section(section.section("per_ip"), DEFAULT_PER_IP)
        global_ = Bucket.from_section(section.section("global"), DEFAULT_GLOBAL)
        limits = RateLimits(
            per_ip=per_ip,
            per_email=Bucket.from_section(section.section("per_email"), DEFAULT_PER_EMAIL),
            global_=global_,
            web_registration=Bucket.from_section(
                section.section("web_registration"), DEFAULT_WEB_REGISTRATION
            ),
            per_email_domain=_derived_bucket(section, "per_email_domain", global_, _domain_limit),
            per_network=_derived_bucket(section, "per_network", per_ip, _network_limit),
            ipv4_network_prefix=section.integer(
                "ipv4_network_prefix", DEFAULT_IPV4_NETWORK_PREFIX, minimum=8, maximum=32
            ),
            ipv6_network_prefix=section.integer(
                "ipv6_network_prefix", DEFAULT_IPV6_NETWORK_PREFIX, minimum=16, maximum=128
            ),
            given=frozenset(given),
        )
        section.finish()
        return limits

    def over(self, lower: RateLimits) -> RateLimits:
        """`lower` with the values this layer wrote replaced, value by value."""
        merged = lower
        for name, value in sorted(self.given):
            if name in _PREFIXES:
                merged = attrs.evolve(merged, **{name: getattr(self, name)})
                continue
            attribute = _BUCKETS[name]
            base = getattr(merged, attribute)
            if base is None:  # derived so far: from the merged limit it follows
                base = (
                    merged.email_domain_limit
                    if name == "per_email_domain"
                    else merged.network_limit
                )
            bucket = attrs.evolve(base, **{value: getattr(getattr(self, attribute), value)})
            merged = attrs.evolve(merged, **{attribute: bucket})
        return attrs.evolve(merged, given=lower.given | self.given)

    @property
    def email_domain_limit(self) -> Bucket:
        """The limit per mail domain in force: `per_email_domain`, or half the global."""
        return self.per_email_domain or _domain_limit(self.global_)

    @property
    def network_limit(self) -> Bucket:
        """The limit per network in force: `per_network`, or ten clients' `per_ip`."""
        return self.per_network or _network_limit(self.per_ip)


# Cached: the request path asks for these on every request; Buckets are immutable.
@functools.lru_cache(maxsize=64)
def _domain_limit(global_: Bucket) -> Bucket:
    return Bucket(
        burst=max(FLOOR.burst, int(global_.burst * DOMAIN_SHARE_OF_GLOBAL)),
        per_second=max(FLOOR.per_second, global_.per_second * DOMAIN_SHARE_OF_GLOBAL),
    )


@functools.lru_cache(maxsize=64)
def _network_limit(per_ip: Bucket) -> Bucket:
    return Bucket(
        burst=max(FLOOR.burst, per_ip.burst * NETWORK_CLIENTS),
        per_second=max(FLOOR.per_second, per_ip.per_second * NETWORK_CLIENTS),
    )


def _derived_bucket(
    section: Section, name: str, source: Bucket, derive: Callable[[Bucket], Bucket]
) -> Bucket | None:
    """The bucket `name` as written (values it leaves out derived from `source`), or
    None when the section does not write it."""
    if not section.has(name):
        return None
    return Bucket.from_section(section.section(name), derive(source))


@attrs.frozen
class BanEntry:
    """One ban: the entry itself, and what moderators see of it."""

    match: str
    reason: str | None = None
    expires_ts: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.expires_ts is None or self.expires_ts > now_ms


@attrs.frozen
class PolicyLists:
    banned_usernames: tuple[BanEntry, ...] = ()
    banned_emails: tuple[BanEntry, ...] = ()
    banned_ips: tuple[BanEntry, ...] = ()
    allowed_email_domains: tuple[str, ...] = ()
    block_disposable_emails: bool | None = None
    # literal | all | off (rules.usernames.LOOKALIKE_MODES); None: not set in this layer.
    banned_usernames_lookalikes: str | None = None
    # The starter list of abusive username patterns (config/starter_list.py);
    # None: not set in this layer.
    banned_usernames_starter: bool | None = None
    rate_limits: RateLimits | None = None
    # The plain-text list files this layer read (config/list_files.py), absolute.
    list_files: tuple[str, ...] = ()

    @staticmethod
    def from_section(
        section: Section, from_files: Mapping[str, tuple[BanEntry, ...]] | None = None
    ) -> PolicyLists:
        """Read the policy keys of `section`; the caller calls `section.finish()`.

        `from_files`: the entries read from the list files a policy file names, by
        list key, added after the inline ones. None where list files cannot be
        named (homeserver.yaml: they would never be read again)."""
        if from_files is None:
            for kind in BAN_KINDS:
                if section.has(f"{kind.key}_file"):
                    raise section.error(
                        f"{kind.key}_file",
                        "list files can be named in policy_file only, where they are "
                        "reloaded when they change",
                    )
            from_files = {}
        allowed = section.strings("allowed_email_domains")
        _compiles(section, "allowed_email_domains", allowed, DomainAllowList.compile)
        usernames, emails, ips = (
            _ban_list(section, kind) + from_files.get(kind.key, ()) for kind in BAN_KINDS
        )
        return PolicyLists(
            banned_usernames=usernames,
            banned_emails=emails,
            banned_ips=ips,
            allowed_email_domains=allowed,
            block_disposable_emails=section.convert("block_disposable_emails", None, _bool),
            banned_usernames_lookalikes=section.convert(
                "banned_usernames_lookalikes", None, _lookalike_mode
            ),
            banned_usernames_starter=section.convert("banned_usernames_starter", None, _bool),
            rate_limits=(
                RateLimits.from_section(section.section("rate_limits"))
                if section.has("rate_limits")
                else None
            ),
        )


@attrs.frozen
class BanKind:
    """One kind of ban. `name` is what moderators, the admin API and the room call
    it and what email_gate_bans.kind stores; `key` is its list in homeserver.yaml,
    the policy file, PolicyLists and `GET admin/policy`; `compile` checks entries
    (ValueError naming the first bad one)."""

    name: str
    key: str
    compile: Callable[[Sequence[str]], object]

    def entries(self, lists: PolicyLists) -> tuple[BanEntry, ...]:
        entries: tuple[BanEntry, ...] = getattr(lists, self.key)
        return entries


USERNAME_BANS = BanKind("username", "banned_usernames", UsernamePatterns.compile)
EMAIL_BANS = BanKind("email", "banned_emails", EmailRules.compile)
IP_BANS = BanKind("ip", "banned_ips", IpRules.compile)
BAN_KINDS = (USERNAME_BANS, EMAIL_BANS, IP_BANS)


def ban_kind(name: object) -> BanKind | None:
    """The kind called `name` (`username`, `email`, `ip`), or None."""
    return next((kind for kind in BAN_KINDS if kind.name == name), None)


def _ban_list(section: Section, kind: BanKind) -> tuple[BanEntry, ...]:
    none: tuple[BanEntry, ...] = ()
    entries = section.convert(kind.key, none, _ban_entries)
    _compiles(section, kind.key, [entry.match for entry in entries], kind.compile)
    return entries


def _compiles(
    section: Section,
    key: str,
    entries: Sequence[str],
    compile_entries: Callable[[Sequence[str]], object],
) -> None:
    try:
        compile_entries(entries)
    except ValueError as e:
        raise section.error(key, str(e)) from e


def _ban_entries(value: object) -> tuple[BanEntry, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(_ban_entry(index, item) for index, item in enumerate(value))


def _ban_entry(index: int, item: object) -> BanEntry:
    """`"entry"` or `{match: "entry", reason: "...", expires: 2026-12-31T00:00:00Z}`."""
    if isinstance(item, str):
        return BanEntry(match=item)
    if not isinstance(item, Mapping):
        raise TypeError(f"item {index} should be a string or a mapping with 'match', got {item!r}")
    unknown = set(item) - {"match", "reason", "expires"}
    if unknown:
        raise ValueError(f"item {index}: unknown key {sorted(map(str, unknown))[0]!r}")
    match = item.get("match")
    if not isinstance(match, str):
        raise TypeError(f"item {index}: 'match' should be a string, got {match!r}")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"item {index}: 'reason' should be a string, got {reason!r}")
    expires = item.get("expires")
    try:
        expires_ts = None if expires is None else parse_timestamp_ms(expires)
    except ValueError as e:
        raise ValueError(f"item {index}: 'expires' {e}") from e
    return BanEntry(match=match, reason=reason, expires_ts=expires_ts)


def parse_timestamp_ms(value: object) -> int:
    """A date or date-time (ISO 8601; UTC unless it names an offset) -> ms since the epoch."""
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime.combine(value, datetime.time())
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"should be a date like 2026-12-31 or 2026-12-31T18:00:00Z, got {value!r}"
            ) from None
    else:
        raise ValueError(f"should be a date like 2026-12-31, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _lookalike_mode(value: object) -> str:
    if value is False:  # YAML reads a bare `off` as false
        return "off"
    if not isinstance(value, str) or value not in LOOKALIKE_MODES:
        raise ValueError(f"should be one of {', '.join(LOOKALIKE_MODES)}, got {value!r}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
