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

from synapse_email_gate.moderation.moderators import Moderators
from synapse_email_gate.moderation.service import AdminError, ModerationService
from synapse_email_gate.web.http import (
    JsonProblem,
    parse_json_object,
    query_param,
    read_body,
    respond_html,
    respond_json,
)

logger = logging.getLogger(__name__)


Body = dict[str, Any]
Action = Callable[[str, list[str], Body, SynapseRequest], Awaitable[tuple[int, object]]]


class AdminHandlers:
    def __init__(
        self,
        api: ModuleApi,
        moderators: Moderators,
        service: ModerationService,
        page: jinja2.Template,
        page_vars: dict[str, object],
    ) -> None:
        self._api = api
        self._moderators = moderators
        self._service = service
        self._page = page.render(**page_vars)
        s = service
        # (method, path pattern) -> action(actor, path params, body, request)
        self._routes: list[tuple[str, Route, Action]] = [
            ("GET", _path("requests"), self._list_requests),
            ("GET", _path("requests/{}"), self._show_request),
            ("POST", _path("requests/{}/approve"), self._approve),
            ("POST", _path("requests/{}/deny"), self._deny),
            ("GET", _path("tokens"), self._list_tokens),
            ("POST", _path("tokens"), lambda a, p, b, r: _ok(201, s.create_token(a, b))),
            ("POST", _path("tokens/delete"), self._delete_tokens),
            ("POST", _path("tokens/delete_all"), self._delete_all_tokens),
            ("GET", _path("tokens/{}"), lambda a, p, b, r: _ok(200, s.show_token(p[0]))),
            ("DELETE", _path("tokens/{}"), self._delete_token),
            ("GET", _path("accounts/{}"), lambda a, p, b, r: _ok(200, s.show_account(p[0]))),
            ("GET", _path("bans"), lambda a, p, b, r: _wrap(200, "bans", s.list_bans())),
            ("POST", _path("bans"), lambda a, p, b, r: _ok(201, s.add_ban(a, b))),
            ("DELETE", _path("bans/{}"), self._remove_ban),
            ("GET", _path("policy"), self._policy),
            ("GET", _path("policy/why"), lambda a, p, b, r: self._why(r)),
            ("GET", _path("moderators"), self._list_moderators),
            ("POST", _path("moderators"), self._allow),
            ("DELETE", _path("moderators/{}"), self._disallow),
            ("POST", _path("reload"), self._reload),
            ("GET", _path("audit"), self._audit),
        ]

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
        chosen: tuple[Action, list[str]] | None = None
        for route_method, route, action in self._routes:
            params = route.match(segments)
            if params is None:
                continue
            path_known = True
            if route_method == method:
                chosen = (action, params)
                break
        if chosen is None:
            status, error = (405, "Method not allowed") if path_known else (404, "Unknown path")
            respond_json(request, status, {"errcode": "M_UNRECOGNIZED", "error": error})
            return
        actor = await self._authenticate(request)
        if actor is None:
            return
        action, params = chosen
        try:
            body = _json_body(request) if method in ("POST", "DELETE") else {}
            status, answer = await action(actor, params, body, request)
        except AdminError as e:
            respond_json(request, e.status, {"errcode": e.errcode, "error": e.message})
            return
        respond_json(request, status, answer)

    async def _list_requests(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        page = await self._service.list_requests(
            query_param(r, "status"),
            query_param(r, "q"),
            _int_param(r, "limit", 50),
            _int_param(r, "from", 0),
        )
        return 200, page

    async def _show_request(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, await self._service.show_request(p[0])

    async def _approve(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, await self._service.decide(a, p[0], True, b.get("message"))

    async def _deny(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, await self._service.decide(a, p[0], False, b.get("message"))

    async def _list_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        valid_only = query_param(r, "valid") in ("true", "1", "yes")
        return 200, {"tokens": await self._service.list_tokens(valid_only)}

    async def _delete_token(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        deleted = await self._service.delete_tokens(a, [p[0]])
        if not deleted:
            raise AdminError(404, "M_NOT_FOUND", "token not found")
        return 200, {"deleted": deleted}

    async def _delete_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, {"deleted": await self._service.delete_tokens(a, b.get("tokens") or [])}

    async def _delete_all_tokens(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, {"deleted_count": await self._service.delete_all_tokens(a, b.get("confirm"))}

    async def _remove_ban(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        await self._service.remove_ban(a, p[0])
        return 200, {"removed": p[0]}

    async def _why(self, r: SynapseRequest) -> Any:
        return 200, self._service.why(query_param(r, "username"))

    async def _policy(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, self._service.policy_entries()

    async def _list_moderators(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        return 200, {"moderators": await self._service.list_moderators()}

    async def _allow(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        added = await self._service.allow(a, b.get("entry"))
        return (201 if added else 200), {"entry": b.get("entry"), "added": added}

    async def _disallow(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        await self._service.disallow(a, p[0])
        return 200, {"removed": p[0]}

    async def _reload(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        result = await self._service.reload(a)
        logger.info("policy reload requested by %s: %s", a, result.message)
        if not result.ok:
            raise AdminError(400, "EMAIL_GATE_POLICY_INVALID", result.message)
        return 200, {"status": "reloaded", "message": result.message, "revoked": result.revoked}

    async def _audit(self, a: str, p: list[str], b: Body, r: SynapseRequest) -> Any:
        entries = await self._service.audit_log(
            _int_param(r, "limit", 50), _int_param(r, "from", 0)
        )
        return 200, {"entries": entries}


def path_segments(postpath: list[bytes]) -> list[str]:
    """The path's segments, each decoded once.

    Twisted has already percent-decoded every segment of `request.postpath`
    (`%2F` is a `/` inside its segment by now), so they are neither decoded
    again nor joined and split again: a moderator entry, ban id or token with
    `/`, `%` or `?` reaches its handler as sent. A trailing slash is ignored.
    """
    segments = [p.decode("utf-8", errors="replace") for p in postpath]
    while segments and segments[-1] == "":
        segments.pop()
    return segments


@attrs.frozen
class Route:
    """`requests/{}/approve`: literal segments, and `{}` for one segment of any text."""

    parts: tuple[str, ...]

    def match(self, segments: list[str]) -> list[str] | None:
        if len(segments) != len(self.parts):
            return None
        params = []
        for part, segment in zip(self.parts, segments, strict=True):
            if part == "{}":
                if not segment:
                    return None
                params.append(segment)
            elif part != segment:
                return None
        return params


def _path(template: str) -> Route:
    return Route(tuple(template.split("/")))


async def _ok(status: int, result: Awaitable[object]) -> tuple[int, object]:
    return status, await result


async def _wrap(status: int, key: str, result: Awaitable[object]) -> tuple[int, object]:
    return status, {key: await result}


def _int_param(request: SynapseRequest, name: str, default: int) -> int:
    raw = query_param(request, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise AdminError(400, "M_INVALID_PARAM", f"{name} must be an integer") from None


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
