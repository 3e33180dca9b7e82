"""The rules in force, compiled, and the pure decisions made with them.

A `Policy` is built from layers of `PolicyLists` (homeserver.yaml first, then
`policy_file`): ban lists are united; scalar settings from later layers win.
The ban rules of the followed policy rooms (`room_rules`) count with the
username bans; they change on their own (policy/rooms.py) and are carried over
when the lists are compiled again.
Each decision returns a reason code (docs/api.md#reason-codes) or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from synapse_email_gate.config.policy_lists import BAN_KINDS, BanEntry, PolicyLists, RateLimits
from synapse_email_gate.config.starter_list import starter_username_patterns
from synapse_email_gate.rules.addresses import (
    DomainAllowList,
    EmailRules,
    ParsedEmail,
    domain_verdict,
)
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.policy_rules import RoomRules
from synapse_email_gate.rules.usernames import UsernamePatterns


@attrs.frozen
class Policy:
    usernames: UsernamePatterns
    emails: EmailRules
    ips: IpRules
    allowed_domains: DomainAllowList
    block_disposable: bool
    rate_limits: RateLimits
    # When the next ban entry runs out; the policy must be rebuilt then.
    next_expiry_ts: int | None = None
    room_rules: RoomRules = attrs.field(factory=RoomRules.empty)
    # Verdicts of this policy (it never changes) for the names asked lately: a
    # request is vetted on the early path and again in `submit`, and RE2 releases
    # the GIL for every match, which costs a thread switch on a busy process.
    _username_verdicts: dict[str, str | None] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )

    @staticmethod
    def build(
        layers: Sequence[PolicyLists], now_ms: int, room_rules: RoomRules | None = None
    ) -> Policy:
        """Compile the union of the active entries; raises ValueError naming a bad entry."""
        block_disposable = True
        lookalikes = "literal"
        starter = False
        rate_limits = RateLimits()
        for layer in layers:
            if layer.banned_usernames_starter is not None:
                starter = layer.banned_usernames_starter
            if layer.block_disposable_emails is not None:
                block_disposable = layer.block_disposable_emails
            if layer.banned_usernames_lookalikes is not None:
                lookalikes = layer.banned_usernames_lookalikes
            if layer.rate_limits is not None:  # later layers change the values they set
                rate_limits = layer.rate_limits.over(rate_limits)
        bans = [entry for layer in layers for kind in BAN_KINDS for entry in kind.entries(layer)]
        expiries = [e.expires_ts for e in bans if e.expires_ts is not None and e.active(now_ms)]
        return Policy(
            usernames=UsernamePatterns.compile(
                _unique(
                    [
                        *(starter_username_patterns() if starter else ()),
                        *_active(now_ms, (layer.banned_usernames for layer in layers)),
                    ]
                ),
                lookalikes,
            ),
            emails=EmailRules.compile(_active(now_ms, (layer.banned_emails for layer in layers))),
            ips=IpRules.compile(_active(now_ms, (layer.banned_ips for layer in layers))),
            allowed_domains=DomainAllowList.compile(
                _unique(d for layer in layers for d in layer.allowed_email_domains)
            ),
            block_disposable=block_disposable,
            rate_limits=rate_limits,
            next_expiry_ts=min(expiries, default=None),
            room_rules=room_rules if room_rules is not None else RoomRules.empty(),
        )

    def username_ban(self, localpart: str) -> str | None:
        """The ban pattern (or policy room rule) a localpart matches, if any."""
        verdicts = self._username_verdicts
        if localpart in verdicts:
            return verdicts[localpart]
        if len(verdicts) >= _REMEMBERED_VERDICTS:
            verdicts.clear()
        verdict = verdicts[localpart] = self._username_ban(localpart)
        return verdict

    def _username_ban(self, localpart: str) -> str | None:
        if self.usernames.sources:
            pattern = self.usernames.first_match(localpart)
            if pattern is not None:
                return pattern
        if not self.room_rules.rules:
            return None
        rule = self.room_rules.first_match(localpart)
        return None if rule is None else rule.describe()

    def ip_ban(self, ip: str) -> str | None:
        return self.ips.first_match(ip)

    def domain_refusal(self, email: ParsedEmail) -> str | None:
        """`disposable` or `domain_not_allowed`: said plainly to the requester."""
        verdict = domain_verdict(email.domain, self.allowed_domains, self.block_disposable)
        return None if verdict == "ok" else verdict

    def email_ban(self, email: ParsedEmail) -> str | None:
        """An individual ban: never said to the requester."""
        return self.emails.first_match(email)


_REMEMBERED_VERDICTS = 4096


def _active(now_ms: int, lists: Iterable[tuple[BanEntry, ...]]) -> list[str]:
    return _unique(entry.match for entries in lists for entry in entries if entry.active(now_ms))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
