"""Admin API under /_synapse/client/email_gate/admin/ (a moderator's access token).

Routes are listed in ADMIN_ROUTES and documented in docs/admin-api.md. Every
handler authenticates, calls ModerationService, and answers JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import jinja2
from synapse.api.errors import SynapseError
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi

from synapse_email_gate.moderation.accounts import FILTER_KEYS, AccountService
from synapse_email_gate.moderation.imports import RecordImport
from synapse_email_gate.moderation.moderators import Moderators
from synapse_email_gate.moderation.service import AdminError, ModerationService
from synapse_email_gate.moderation.stats import GateStats
from synapse_email_gate.moderation.surge import SurgeService
from synapse_email_gate.web.http import (
    MAX_JSON_INT,
    JsonProblem,
    parse_json_object,
    query_param,
    read_body,
    readable,
    respond_html,
    respond_json,
)

logger = logging.getLogger(__name__)


Body = dict[str, Any]
Answer = tuple[int, object]


class AdminHandlers:
    def __init__(
        self,
        api: ModuleApi,
        moderators: Moderators,
        service: ModerationService,
        accounts: AccountService,
        page: jinja2.Template,
        page_vars: dict[str, object],
        surge: SurgeService | None = None,
        imports: RecordImport | None = None,
        stats: GateStats | None = None,
    ) -> None:
        self._imports = imports
        self._api = api
        self._surge = surge
        self._moderators = moderators
        self._service = service
        self._accounts = accounts
        self._stats = stats
        self._page = page.render(**page_vars)

    async def page(self, request: SynapseRequest) -> None:
        """The review page; it signs in with the moderator's Matrix account itself."""
        respond_html(request, 200, self._page)

    async def _authenticate(self, request: SynapseRequest) -> str | None:
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
        if not await self._moderators.may_moderate(user_id):
            respond_json(request, 403, {"errcode": "M_FORBIDDEN", "error": "Not a moderator"})
            return None
        return user_id

    async def handle(self, request: SynapseRequest) -> None:
        method = request.method.decode("ascii", errors="replace")
        segments = path_segments(request.postpath or [])[1:]  # drop the leading "admin"
        path_known = False
        chosen: tuple[AdminRoute, list[str]] | None = None
        for route in ADMIN_ROUTES:
            params = route.match(segments)
            if params is None:
                continue
            path_known = True
            if route.method == method:
                chosen = (route, params)
                break
        if chosen is None:
            status, error = (405, "Method not allowed") if path_known else (404, "Unknown path")
            respond_json(request, status, {"errcode": "M_UNRECOGNIZED", "error": error})
            return
        actor = await self._authenticate(request)
        if actor is None:
            return
        route, params = chosen
        try:
            body = _json_body(request) if method in ("POST", "PATCH", "DELETE") else {}
            status, answer = await route.action(self, actor, params, body, request)
        except AdminError as e:
            respond_json(request, e.status, {"errcode": e.errcode, "error": e.message})
            return
        respond_json(request, status, answer)

    async def list_requests(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        page = await self._service.list_requests(
            query_param(r, "status"),
            query_param(r, "q"),
            _int_param(r, "limit", 50),
            _int_param(r, "from", 0),
        )
        return 200, page

    async def show_request(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.show_request(p[0])

    async def approve(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.decide(a, p[0], True, b.get("message"))

    async def deny(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.decide(a, p[0], False, b.get("message"))

    async def create_token(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 201, await self._service.create_token(a, b)

    async def show_token(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.show_token(p[0])

    async def edit_token(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.edit_token(a, p[0], b)

    async def show_account(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.show_account(p[0])

    async def lift_probation(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        await self._accounts.lift_probation(a, p[0], b)
        return 200, await self._service.show_account(p[0])

    async def list_accounts(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        raw = {key: query_param(r, key) for key in FILTER_KEYS}
        unknown = sorted(
            name.decode("utf-8", "replace")
            for name in (r.args or {})
            if name.decode("utf-8", "replace") not in (*FILTER_KEYS, "limit")
        )
        if unknown:
            raise AdminError(400, "M_INVALID_PARAM", f"unknown filter(s): {', '.join(unknown)}")
        found = self._accounts.parse_filter({k: v for k, v in raw.items() if v is not None})
        return 200, await self._accounts.list_accounts(found, _int_param(r, "limit", 100))

    async def account_action(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._accounts.act(a, b)

    async def list_bans(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, {"bans": await self._service.list_bans()}

    async def add_ban(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 201, await self._service.add_ban(a, b)

    async def list_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        valid_only = query_param(r, "valid") in ("true", "1", "yes")
        return 200, {"tokens": await self._service.list_tokens(valid_only)}

    async def delete_token(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        deleted = await self._service.delete_tokens(a, [p[0]])
        if not deleted:
            raise AdminError(404, "M_NOT_FOUND", "token not found")
        return 200, {"deleted": deleted}

    async def delete_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, {"deleted": await self._service.delete_tokens(a, b.get("tokens"))}

    async def delete_all_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, {"deleted_count": await self._service.delete_all_tokens(a, b.get("confirm"))}

    async def remove_ban(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        await self._service.remove_ban(a, p[0])
        return 200, {"removed": p[0]}

    async def why(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, self._service.why(query_param(r, "username"))

    async def policy(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, self._service.policy_entries()

    async def list_moderators(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, {"moderators": await self._service.list_moderators()}

    async def allow(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        added = await self._service.allow(a, b.get("entry"))
        return (201 if added else 200), {"entry": b.get("entry"), "added": added}

    async def disallow(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        await self._service.disallow(a, p[0])
        return 200, {"removed": p[0]}

    async def reload(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        result = await self._service.reload(a)
        logger.info("policy reload requested by %s: %s", a, result.message)
        if not result.ok:
            raise AdminError(400, "EMAIL_GATE_POLICY_INVALID", result.message)
        return 200, {"status": "reloaded", "message": result.message, "revoked": result.revoked}

    async def purge(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._service.purge(a, b)

    async def surge_status(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._surge_service().status()

    async def surge_switch(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        return 200, await self._surge_service().switch(a, b)

    def _surge_service(self) -> SurgeService:
        if self._surge is None:
            raise AdminError(404, "M_NOT_FOUND", "the surge switch is not available")
        return self._surge

    async def import_registrations(
        self, a: str, p: list[str], b: Body, r: SynapseRequest
    ) -> Answer:
        if self._imports is None:
            raise AdminError(404, "M_NOT_FOUND", "importing is not available here")
        return 200, await self._imports.import_registrations(a, b)

    async def audit(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        entries = await self._service.audit_log(
            _int_param(r, "limit", 50), _int_param(r, "from", 0)
        )
        return 200, {"entries": entries}

    async def stats(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Answer:
        if self._stats is None:
            raise AdminError(404, "M_NOT_FOUND", "stats are not available")
        return 200, await self._stats.picture(query_param(r, "range"))


def path_segments(postpath: list[bytes]) -> list[str]:
    """The path's segments, each decoded once.

    Twisted has already percent-decoded every segment of `request.postpath`
    (`%2F` is a `/` inside its segment by now), so they are neither decoded
    again nor joined and split again: a moderator entry, ban id or token with
    `/`, `%` or `?` reaches its handler as sent. A trailing slash is ignored.
    """
    segments = [readable(p.decode("utf-8", errors="replace")) for p in postpath]
    while segments and segments[-1] == "":
        segments.pop()
    return segments


Action = Callable[[AdminHandlers, str, list[str], Body, SynapseRequest], Awaitable[Answer]]


@attrs.frozen
class AdminRoute:
    """`requests/{id}/approve` below `admin/`: literal segments, and `{name}` for one
    segment of any text (the action gets them in order)."""

    method: str
    template: str
    action: Action

    def match(self, segments: list[str]) -> list[str] | None:
        parts = self.template.split("/")
        if len(segments) != len(parts):
            return None
        params = []
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                if not segment:
                    return None
                params.append(segment)
            elif part != segment:
                return None
        return params


# Every admin route; docs/admin-api.md and web/openapi.py describe each one.
ADMIN_ROUTES: tuple[AdminRoute, ...] = (
    AdminRoute("GET", "requests", AdminHandlers.list_requests),
    AdminRoute("GET", "requests/{id}", AdminHandlers.show_request),
    AdminRoute("POST", "requests/{id}/approve", AdminHandlers.approve),
    AdminRoute("POST", "requests/{id}/deny", AdminHandlers.deny),
    AdminRoute("GET", "tokens", AdminHandlers.list_tokens),
    AdminRoute("POST", "tokens", AdminHandlers.create_token),
    AdminRoute("POST", "tokens/delete", AdminHandlers.delete_tokens),
    AdminRoute("POST", "tokens/delete_all", AdminHandlers.delete_all_tokens),
    AdminRoute("GET", "tokens/{token}", AdminHandlers.show_token),
    AdminRoute("PATCH", "tokens/{token}", AdminHandlers.edit_token),
    AdminRoute("POST", "tokens/{token}", AdminHandlers.edit_token),
    AdminRoute("DELETE", "tokens/{token}", AdminHandlers.delete_token),
    AdminRoute("GET", "accounts", AdminHandlers.list_accounts),
    AdminRoute("POST", "accounts/action", AdminHandlers.account_action),
    AdminRoute("GET", "accounts/{user_id}", AdminHandlers.show_account),
    AdminRoute("POST", "accounts/{user_id}/probation", AdminHandlers.lift_probation),
    AdminRoute("GET", "bans", AdminHandlers.list_bans),
    AdminRoute("POST", "bans", AdminHandlers.add_ban),
    AdminRoute("DELETE", "bans/{id}", AdminHandlers.remove_ban),
    AdminRoute("GET", "policy", AdminHandlers.policy),
    AdminRoute("GET", "policy/why", AdminHandlers.why),
    AdminRoute("GET", "moderators", AdminHandlers.list_moderators),
    AdminRoute("POST", "moderators", AdminHandlers.allow),
    AdminRoute("DELETE", "moderators/{entry}", AdminHandlers.disallow),
    AdminRoute("POST", "reload", AdminHandlers.reload),
    AdminRoute("GET", "audit", AdminHandlers.audit),
    AdminRoute("POST", "purge", AdminHandlers.purge),
    AdminRoute("GET", "surge", AdminHandlers.surge_status),
    AdminRoute("POST", "surge", AdminHandlers.surge_switch),
    AdminRoute("POST", "import/registrations", AdminHandlers.import_registrations),
    AdminRoute("GET", "stats", AdminHandlers.stats),
)


def _int_param(request: SynapseRequest, name: str, default: int) -> int:
    raw = query_param(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    # Beyond what a database column holds (SQLite's OFFSET overflows).
    if value is None or abs(value) > MAX_JSON_INT:
        raise AdminError(400, "M_INVALID_PARAM", f"{name} must be an integer")
    return value


def _json_body(request: SynapseRequest) -> Body:
    raw = read_body(request)
    if raw is None:
        raise AdminError(413, "M_TOO_LARGE", "The request body is too large.")
    if not raw.strip():
        return {}
    body = parse_json_object(raw)
    if isinstance(body, JsonProblem):
        raise AdminError(400, body.errcode, body.message)
    return body
