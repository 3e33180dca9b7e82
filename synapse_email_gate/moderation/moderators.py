"""Who may moderate: local server admins, and the local users matched by
`moderators` entries (from the config, or added at run time and stored in
`email_gate_moderators`). The admin API and the moderation room ask the same
question here; what an entry may name is in rules/moderator_entries.py.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from synapse_email_gate.rules.moderator_entries import ModeratorRules, is_local_user
from synapse_email_gate.storage.moderation import ModerationStore

logger = logging.getLogger(__name__)


class Moderators:
    """Who may moderate: local server admins, and local users matched by
    `moderators` (config or stored). Users of other servers never moderate."""

    def __init__(
        self, api: ModuleApi, entries: tuple[str, ...], moderation: ModerationStore
    ) -> None:
        self._api = api
        self._config_entries = entries
        self._moderation = moderation
        self._compiled: tuple[tuple[str, ...], ModeratorRules] | None = None

    async def _rules(self) -> ModeratorRules:
        stored = await self._moderation.moderators()
        entries = (*self._config_entries, *(row["entry"] for row in stored))
        if self._compiled is None or self._compiled[0] != entries:
            rules = ModeratorRules(entries, self._api.server_name)
            for entry, problem in rules.problems.items():
                logger.warning("moderator entry %r ignored: %s", entry, problem)
            self._compiled = (entries, rules)
        return self._compiled[1]

    async def may_moderate(self, user_id: str) -> bool:
        if not is_local_user(user_id, self._api.server_name):
            return False
        if (await self._rules()).matches(user_id):
            return True
        return bool(await self._api.is_user_admin(user_id))

    async def not_moderating(self, user_ids: list[str]) -> list[str]:
        """The users among `user_ids` who may not moderate."""
        rules = await self._rules()
        server = self._api.server_name
        outsiders = []
        for user_id in user_ids:
            local = is_local_user(user_id, server)
            if not local or not (rules.matches(user_id) or await self._api.is_user_admin(user_id)):
                outsiders.append(user_id)
        return outsiders
