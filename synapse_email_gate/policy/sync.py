"""Keeps every process's policy in step.

A reload asked of one process (admin API, room command, CLI) bumps a counter in
the database; every process polls it with the policy file's identity and
reloads when it moved. So a reload reaches all workers within one
`policy_check_interval`, even when the file itself did not change.

A change made here revokes what the new bans match (policy/revocation.py) before
the counter moves: the other processes, the background-tasks one included,
then find nothing left to revoke, and the answer counts every revocation.
"""

from __future__ import annotations

from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.policy.live import LivePolicy, ReloadResult
from synapse_email_gate.policy.revocation import Revoker
from synapse_email_gate.storage.moderation import ModerationStore
from synapse_email_gate.storage.state import StateStore


class PolicySync:
    def __init__(
        self,
        policy: LivePolicy,
        revoker: Revoker,
        state: StateStore,
        moderation: ModerationStore,
    ) -> None:
        self._policy = policy
        self._revoker = revoker
        self._state = state
        self._moderation = moderation
        self._seen: int | None = None

    @property
    def current(self) -> Policy:
        return self._policy.current

    def layers(self) -> dict[str, PolicyLists]:
        return self._policy.layers()

    async def reload_everywhere(self, actor: str) -> ReloadResult:
        """Re-read the file and the stored bans here, revoke what they ban, and tell
        every other process."""
        result = self._policy.reload()
        if not result.ok:
            return result
        revoked = await self.changed(actor, "policy reload")
        return ReloadResult(ok=True, message=result.message, revoked=revoked)

    async def changed(self, actor: str, cause: str) -> int:
        """Stored bans changed (or a reload was asked): apply and revoke here, then
        signal the others. Returns how many open requests were revoked."""
        await self._load_stored()
        revoked = await self._revoker.revoke_banned(actor, cause)
        self._seen = await self._state.bump_policy_generation()
        return revoked

    async def follow(self) -> bool:
        """Reload when another process asked for it; load stored bans at start.
        True when the policy was (re)loaded here."""
        generation = await self._state.policy_generation()
        loaded = self._seen is None or generation != self._seen
        if loaded:
            if self._seen is not None:
                self._policy.reload()
            await self._load_stored()
        self._seen = generation
        return loaded

    async def _load_stored(self) -> None:
        self._policy.set_stored(await self._moderation.stored_policy())
