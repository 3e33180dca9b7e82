"""A ban that takes effect revokes the open requests it matches, and their tokens.

"Open" requests still hold a promise: a token that may be used, an address
check or a moderator's decision to come, or a mail not yet assessed
(storage/requests.py). A request matches when the policy in force bans its
username, its address (normalised; with `privacy.hash_emails`, once only the
hash is left, the exact-address entries are compared as hashes: a `*@domain`
or `/regex/` entry cannot see a hash) or the IP it was made from.

Each revocation is a conditional write (`storage.requests.revoke_requests_txn`): a
request is revoked once, whichever process gets there first, so running the
sweep twice, or on two processes at once, revokes nothing twice. Who runs it:

- the process that handles a moderator's ban or reload (admin API, CLI,
  room), after the new policy is in force there and before the other
  processes are told; the answer says how many it revoked;
- the background-tasks process, when its policy check picks up a changed
  `policy_file` or another process's change, and once at start-up (bans in
  homeserver.yaml).

Each sweep that revoked something logs it, counts it in
`synapse_email_gate_revoked_total{reason}` and writes an audit entry.
"""

from __future__ import annotations

import logging
from collections import Counter

from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.rules.addresses import InvalidEmail, address_key, parse_email
from synapse_email_gate.storage.moderation import ModerationStore
from synapse_email_gate.storage.requests import OpenRequest, RequestStore

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "email_gate"  # the audit log's actor for sweeps nobody asked for


class Revoker:
    def __init__(
        self,
        api: ModuleApi,
        policy: LivePolicy,
        hash_secret: str | None,
        moderation: ModerationStore,
        requests: RequestStore,
    ) -> None:
        self._api = api
        self._policy = policy
        self._hash_secret = hash_secret
        self._moderation = moderation
        self._requests = requests

    async def revoke_banned(self, actor: str, cause: str) -> int:
        """Revoke every open request the policy in force here bans; how many."""
        policy = self._policy.current
        hashed = (
            frozenset(address_key(a, self._hash_secret) for a in policy.emails.addresses)
            if self._hash_secret is not None
            else frozenset()
        )

        def reason_of(request: OpenRequest) -> str | None:
            return ban_reason(policy, request, hashed)

        now = self._api.get_current_time_msec()
        done = await self._requests.revoke_banned(now, reason_of)
        if not done:
            return 0
        counts = Counter(reason for _, reason in done)
        for reason, count in counts.items():
            metrics.revoked(self._api.server_name, reason, count)
        summary = ", ".join(f"{reason}={count}" for reason, count in sorted(counts.items()))
        logger.info(
            "%s: revoked %d open request(s) and their tokens (%s)", cause, len(done), summary
        )
        await self._moderation.audit(
            now, actor, "ban.revoke", None, f"{cause}: {len(done)} revoked ({summary})"
        )
        return len(done)


def ban_reason(
    policy: Policy, request: OpenRequest, hashed_addresses: frozenset[str]
) -> str | None:
    """Why the policy bans this request: a reason code, or None."""
    if policy.username_ban(request.localpart) is not None:
        return "username_banned"
    if policy.ip_ban(request.ip) is not None:
        return "ip_banned"
    if request.email == request.email_key and request.email_key.startswith("hmac:"):
        # Only the hash is left (privacy.hash_emails, the mail is out).
        return "email_banned" if request.email_key in hashed_addresses else None
    try:
        parsed = parse_email(request.email)
    except InvalidEmail:
        return None
    return "email_banned" if policy.email_ban(parsed) is not None else None
