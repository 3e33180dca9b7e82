"""The rule lists moderators edit: in homeserver.yaml and, reloadable, in `policy_file`.

Both places use the same keys and this one parser, so an entry that is valid in
one is valid in the other. Lists are validated by compiling them, so a bad
pattern is refused with the key and the entry named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from synapse_email_gate.configreader import Section


@attrs.frozen
class Bucket:
    """A token bucket: `burst` requests at once, refilled at `per_second`."""

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


@attrs.frozen
class RateLimits:
    per_ip: Bucket = DEFAULT_PER_IP
    per_email: Bucket = DEFAULT_PER_EMAIL
    global_: Bucket = DEFAULT_GLOBAL

    @staticmethod
    def from_section(section: Section) -> RateLimits:
        limits = RateLimits(
            per_ip=Bucket.from_section(section.section("per_ip"), DEFAULT_PER_IP),
            per_email=Bucket.from_section(section.section("per_email"), DEFAULT_PER_EMAIL),
            global_=Bucket.from_section(section.section("global"), DEFAULT_GLOBAL),
        )
        section.finish()
        return limits


@attrs.frozen
class PolicyLists:
    banned_usernames: tuple[str, ...] = ()
    banned_emails: tuple[str, ...] = ()
    banned_ips: tuple[str, ...] = ()
    allowed_email_domains: tuple[str, ...] = ()
    block_disposable_emails: bool | None = None
    rate_limits: RateLimits | None = None

    @staticmethod
    def from_section(section: Section) -> PolicyLists:
        """Read the policy keys of `section`; the caller calls `section.finish()`."""
        from synapse_email_gate.emails import DomainAllowList, EmailRules
        from synapse_email_gate.netrules import IpRules
        from synapse_email_gate.patterns import UsernamePatterns

        return PolicyLists(
            banned_usernames=_checked(section, "banned_usernames", UsernamePatterns.compile),
            banned_emails=_checked(section, "banned_emails", EmailRules.compile),
            banned_ips=_checked(section, "banned_ips", IpRules.compile),
            allowed_email_domains=_checked(
                section, "allowed_email_domains", DomainAllowList.compile
            ),
            block_disposable_emails=section.convert("block_disposable_emails", None, _bool),
            rate_limits=(
                RateLimits.from_section(section.section("rate_limits"))
                if section.has("rate_limits")
                else None
            ),
        )


def _checked(
    section: Section, key: str, compile_entries: Callable[[Sequence[str]], object]
) -> tuple[str, ...]:
    entries = section.strings(key)
    try:
        compile_entries(entries)
    except ValueError as e:
        raise section.error(key, str(e)) from e
    return entries


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
