"""The rules in force, compiled, and the pure decisions made with them.

A `Policy` is built from layers of `PolicyLists` (homeserver.yaml first, then
`policy_file`): ban lists are united; scalar settings from later layers win.
Each decision returns a reason code (docs/reason-codes.md) or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from synapse_email_gate.emails import DomainAllowList, EmailRules, ParsedEmail, domain_verdict
from synapse_email_gate.netrules import IpRules
from synapse_email_gate.patterns import UsernamePatterns
from synapse_email_gate.policy_lists import PolicyLists, RateLimits


@attrs.frozen
class Policy:
    usernames: UsernamePatterns
    emails: EmailRules
    ips: IpRules
    allowed_domains: DomainAllowList
    block_disposable: bool
    rate_limits: RateLimits

    @staticmethod
    def build(layers: Sequence[PolicyLists]) -> Policy:
        """Compile the union of the layers; raises ValueError naming a bad entry."""
        block_disposable = True
        rate_limits = RateLimits()
        for layer in layers:
            if layer.block_disposable_emails is not None:
                block_disposable = layer.block_disposable_emails
            if layer.rate_limits is not None:
                rate_limits = layer.rate_limits
        return Policy(
            usernames=UsernamePatterns.compile(_union(layer.banned_usernames for layer in layers)),
            emails=EmailRules.compile(_union(layer.banned_emails for layer in layers)),
            ips=IpRules.compile(_union(layer.banned_ips for layer in layers)),
            allowed_domains=DomainAllowList.compile(
                _union(layer.allowed_email_domains for layer in layers)
            ),
            block_disposable=block_disposable,
            rate_limits=rate_limits,
        )

    def username_ban(self, localpart: str) -> str | None:
        """The ban pattern a localpart matches, if any."""
        return self.usernames.first_match(localpart)

    def ip_ban(self, ip: str) -> str | None:
        return self.ips.first_match(ip)

    def domain_refusal(self, email: ParsedEmail) -> str | None:
        """`disposable` or `domain_not_allowed`: said plainly to the requester."""
        verdict = domain_verdict(email.domain, self.allowed_domains, self.block_disposable)
        return None if verdict == "ok" else verdict

    def email_ban(self, email: ParsedEmail) -> str | None:
        """An individual ban: never said to the requester."""
        return self.emails.first_match(email)


def _union(lists: Iterable[tuple[str, ...]]) -> list[str]:
    seen: dict[str, None] = {}
    for entries in lists:
        for entry in entries:
            seen.setdefault(entry, None)
    return list(seen)
