"""Admin endpoints under /_synapse/client/email_gate/admin/ (Bearer token of a moderator)."""

from __future__ import annotations

import logging
import re

from synapse.api.errors import SynapseError
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi

from synapse_email_gate.config import is_plain_user_id
from synapse_email_gate.policy_sync import PolicySync
from synapse_email_gate.web.http import respond_json

logger = logging.getLogger(__name__)


class Moderators:
    """Who may use the admin API: server admins and users matched by `moderators`."""

    def __init__(self, api: ModuleApi, entries: tuple[str, ...]) -> None:
        self._api = api
        self._ids = {entry for entry in entries if is_plain_user_id(entry)}
        self._patterns = [re.compile(entry) for entry in entries if entry not in self._ids]

    async def may_moderate(self, user_id: str) -> bool:
        if user_id in self._ids or any(p.fullmatch(user_id) for p in self._patterns):
            return True
        return await self._api.is_user_admin(user_id)

    async def authenticate(self, request: SynapseRequest) -> str | None:
        """The moderator's user ID, or None after answering 401/403."""
        if not request.requestHeaders.hasHeader(b"Authorization"):
            respond_json(request, 401, {"errcode": "M_MISSING_TOKEN", "error": "Missing token"})
            return None
        try:
            requester = await self._api.get_user_by_req(request)
        except SynapseError as e:
            respond_json(request, e.code, {"errcode": e.errcode, "error": e.msg})
            return None
        user_id = requester.user.to_string()
        if not await self.may_moderate(user_id):
            respond_json(request, 403, {"errcode": "M_FORBIDDEN", "error": "Not a moderator"})
            return None
        return user_id


class AdminHandlers:
    def __init__(self, moderators: Moderators, policy: PolicySync) -> None:
        self._moderators = moderators
        self._policy = policy

    async def reload(self, request: SynapseRequest) -> None:
        user_id = await self._moderators.authenticate(request)
        if user_id is None:
            return
        result = await self._policy.reload_everywhere()
        logger.info("policy reload requested by %s: %s", user_id, result.message)
        if result.ok:
            respond_json(request, 200, {"status": "reloaded", "message": result.message})
        else:
            respond_json(
                request,
                400,
                {"errcode": "EMAIL_GATE_POLICY_INVALID", "error": result.message},
            )
