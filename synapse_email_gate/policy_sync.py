"""Keeps every process's policy in step.

A reload asked of one process (admin API, room command, CLI) bumps a counter in
the database; every process polls it with the policy file's identity and
reloads when it moved. So a reload reaches all workers within one
`policy_check_interval`, even when the file itself did not change.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from synapse_email_gate import store
from synapse_email_gate.live_policy import LivePolicy, ReloadResult

GENERATION = "policy_generation"


class PolicySync:
    def __init__(self, api: ModuleApi, policy: LivePolicy) -> None:
        self._api = api
        self._policy = policy
        self._seen: int | None = None

    async def reload_everywhere(self) -> ReloadResult:
        result = self._policy.reload()
        if result.ok:
            self._seen = await self._api.run_db_interaction(
                "email_gate_bump_policy", store.bump_counter_txn, GENERATION
            )
        return result

    async def follow(self) -> None:
        """Reload when another process asked for it."""
        generation = await self._api.run_db_interaction(
            "email_gate_policy_generation", store.get_counter_txn, GENERATION
        )
        if self._seen is not None and generation != self._seen:
            self._policy.reload()
        self._seen = generation
