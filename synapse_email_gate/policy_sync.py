"""Keeps every process's policy in step.

A reload asked of one process (admin API, room command, CLI) bumps a counter in
the database; every process polls it with the policy file's identity and
reloads when it moved. So a reload reaches all workers within one
`policy_check_interval`, even when the file itself did not change.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from synapse_email_gate import admin_store, store
from synapse_email_gate.live_policy import LivePolicy, ReloadResult
from synapse_email_gate.policy_lists import PolicyLists

GENERATION = "policy_generation"


class PolicySync:
    def __init__(self, api: ModuleApi, policy: LivePolicy) -> None:
        self._api = api
        self._policy = policy
        self._seen: int | None = None

    def layers(self) -> dict[str, PolicyLists]:
        return self._policy.layers()

    async def reload_everywhere(self) -> ReloadResult:
        """Re-read the file and the stored bans here, and tell every other process."""
        result = self._policy.reload()
        if result.ok:
            await self.changed()
        return result

    async def changed(self) -> None:
        """Stored bans changed (or a reload was asked): apply here, signal the others."""
        await self._load_stored()
        self._seen = await self._api.run_db_interaction(
            "email_gate_bump_policy", store.bump_counter_txn, GENERATION
        )

    async def follow(self) -> None:
        """Reload when another process asked for it; load stored bans at start."""
        generation = await self._api.run_db_interaction(
            "email_gate_policy_generation", store.get_counter_txn, GENERATION
        )
        if self._seen is None or generation != self._seen:
            if self._seen is not None:
                self._policy.reload()
            await self._load_stored()
        self._seen = generation

    async def _load_stored(self) -> None:
        bans = await self._api.run_db_interaction("email_gate_load_bans", admin_store.list_bans_txn)
        self._policy.set_stored(admin_store.stored_policy_layer(bans))
