"""What Synapse itself does to an account, for mass action: lock, suspend,
deactivate (and undo the first two).

The module API offers none of these, so they go through the homeserver the
module API wraps: the same store methods and handler Synapse's own admin API
uses (`PUT /_synapse/admin/v2/users/<user_id>` with `locked`,
`PUT /_synapse/admin/v1/suspend/<user_id>`, `POST /_synapse/admin/v1/deactivate/<user_id>`),
which invalidate Synapse's caches on every process.
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi
from synapse.types import create_requester

# Mass actions, and whether one can be undone.
ACTIONS = ("lock", "unlock", "suspend", "unsuspend", "deactivate")
IRREVERSIBLE = frozenset({"deactivate"})


class SynapseAccounts:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        hs: Any = api._hs  # private: no public module API for these
        self._store = hs.get_datastores().main
        self._hs = hs

    async def apply(self, action: str, user_id: str, actor: str) -> None:
        if action in ("lock", "unlock"):
            await self._store.set_user_locked_status(user_id, action == "lock")
        elif action in ("suspend", "unsuspend"):
            await self._store.set_user_suspended_status(user_id, action == "suspend")
        elif action == "deactivate":
            handler = self._hs.get_deactivate_account_handler()
            await handler.deactivate_account(user_id, False, create_requester(actor), by_admin=True)
        else:  # the service checks the action first
            raise ValueError(f"unknown account action {action!r}")
