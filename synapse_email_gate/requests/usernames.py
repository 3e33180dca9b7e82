"""The username a person asks for, checked the same way wherever they ask: on
the request page, the JSON API and an invite link's page.

Refusals here may be said plainly (availability is public in Matrix anyway).
The bans are matched first, in memory; Synapse's own check asks the database.
"""

from __future__ import annotations

from synapse.api.errors import SynapseError
from synapse.module_api import ModuleApi

from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.requests import outcomes
from synapse_email_gate.requests.outcomes import Refusal


class UsernameCheck:
    def __init__(self, api: ModuleApi, policy: LivePolicy) -> None:
        self._api = api
        self._policy = policy

    async def check(self, raw: str) -> str | Refusal:
        """The localpart `raw` names, or why it cannot be registered: missing, not
        Synapse's grammar, banned (look-alikes included), taken or reserved for an
        application service (Synapse's `check_username`)."""
        localpart = self.check_in_memory(raw)
        if isinstance(localpart, Refusal):
            return localpart
        try:
            await self._api.check_username(localpart)
        except SynapseError as e:
            return Refusal(400, e.errcode, str(e.msg), "username")
        return localpart

    def check_in_memory(self, raw: str) -> str | Refusal:
        """The part of `check` that needs no database: the localpart, or why not
        (missing, not ASCII, banned)."""
        localpart = clean_username(raw, self._api.server_name)
        if not localpart:
            return outcomes.missing_param("username")
        if not localpart.isascii():
            # Synapse refuses these too; refused here before the ban patterns, which
            # cannot match text that is not valid Unicode (a lone surrogate from JSON).
            return _NOT_ASCII
        # The bans first: they are matched in memory, while Synapse's check asks the
        # database; a flood of banned names is then answered without a query
        # (benchmarks/bench_flood.py).
        if self._policy.current.username_ban(localpart) is not None:
            return _BANNED
        return localpart


_NOT_ASCII = Refusal(
    400,
    "M_INVALID_USERNAME",
    "User ID can only contain characters a-z, 0-9, or '=_-./+'",
    "username",
)
_BANNED = Refusal(
    400,
    outcomes.USERNAME_BANNED,
    "This username is not allowed on this server. Please choose another.",
    "username",
)


def clean_username(raw: str, server_name: str) -> str:
    """What people type -> a localpart: trims, lowercases, accepts `@name:server`."""
    name = raw.strip()
    if name.startswith("@"):
        name = name[1:]
        suffix = f":{server_name}"
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.lower()
