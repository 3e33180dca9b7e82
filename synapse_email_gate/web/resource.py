"""One Twisted resource under /_synapse/client/email_gate that routes to handlers.

Handlers write their answer themselves and return nothing: refusals are
answered, not raised, which keeps garbage low under a flood (see the notes on
Synapse's garbage collection in docs/internals.md).

Secrets in our URLs (a mailed token in `register?token=`, an address check's
`verify?code=`, an invite token in `admin/tokens/<token>`) are taken out of the
request's URI while Twisted walks the path to this resource, before Synapse
writes any log line with it: the "Received request" line (DEBUG), the log
context, and the "Processed request" line. The handlers read the values from
`request.args` and `request.postpath`, which are parsed before that.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote, unquote_to_bytes

from synapse.http.server import DirectServeJsonResource
from synapse.http.site import SynapseRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from synapse_email_gate.web.http import respond_json

logger = logging.getLogger(__name__)

BASE_PATH = "/_synapse/client/email_gate"
REDACTED = b"<redacted>"
# Query parameters whose values are secrets, wherever they appear under BASE_PATH.
SECRET_PARAMS = frozenset({b"token", b"code"})
# Admin routes whose last segment is a token (the other `tokens/...` are actions).
_TOKEN_IN_PATH = re.compile(r"admin/tokens/(?!(?:delete|delete_all)/?$).+", re.S)

Handler = Callable[[SynapseRequest], Awaitable[None]]
# Answers the request from memory and returns True, or returns False having written nothing.
EarlyHandler = Callable[[SynapseRequest], bool]


def redacted_uri(uri: bytes, route: str) -> bytes:
    """`uri` without the secrets of our paths; `route` is the decoded path below
    BASE_PATH, as the handlers see it (`admin/tokens/<token>`)."""
    path, sep, query = uri.partition(b"?")
    if _TOKEN_IN_PATH.fullmatch(route):
        path = BASE_PATH.encode("ascii") + b"/admin/tokens/" + REDACTED
    if not sep:
        return path
    fields = []
    for field in query.split(b"&"):
        name, eq, _ = field.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" ")).strip().lower()
        fields.append(name + b"=" + REDACTED if eq and key in SECRET_PARAMS else field)
    return path + b"?" + b"&".join(fields)


def _route(request: SynapseRequest) -> str:
    """The path below BASE_PATH as the handlers decode it."""
    segments = [unquote(p.decode("utf-8", errors="replace")) for p in request.postpath or []]
    return "/".join(segments).strip("/")


def redact_request(request: SynapseRequest) -> None:
    uri = request.uri
    # Nothing to redact without a query, a token path or an escape that could spell
    # one: most requests (every one of a flood of `api/request`) skip the decoding.
    if isinstance(uri, bytes) and (b"?" in uri or b"tokens/" in uri or b"%" in uri):
        request.uri = redacted_uri(uri, _route(request))


class GateLeafResource(DirectServeJsonResource):
    """What the path walk ends at below BASE_PATH: renders with the gate.

    `early` handlers, by (method, path), are tried synchronously first: one that
    answers from memory returns True and the request ends there, without the
    coroutine, Deferred and tracing that Synapse wraps every async answer in
    (a flood of refusals then costs little more than Synapse's HTTP stack).
    """

    isLeaf = True

    def __init__(self, render: Handler, early: Mapping[tuple[bytes, bytes], EarlyHandler]) -> None:
        super().__init__()
        self._render = render
        self._early = early

    def render(self, request: SynapseRequest) -> int:
        early = self._early.get((request.method, b"/".join(request.postpath or ())))
        if early is not None and early(request):
            return NOT_DONE_YET
        return super().render(request)

    async def _async_render(self, request: SynapseRequest) -> None:
        await self._render(request)


class GateResource(DirectServeJsonResource):
    # Not a leaf, so that the path walk calls getChildWithDefault below, before
    # Synapse logs the request.
    isLeaf = False

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Handler],
        early: Mapping[tuple[bytes, bytes], EarlyHandler] | None = None,
    ) -> None:
        super().__init__()
        self._routes = routes
        self._paths = {path for _, path in routes}
        self._leaf = GateLeafResource(self._async_render, early or {})

    def getChildWithDefault(self, path: bytes, request: SynapseRequest) -> Resource:
        # Twisted moved the segment below us from postpath to prepath: put it back,
        # the handlers route on the whole path below BASE_PATH.
        if request.prepath and request.postpath is not None:
            request.prepath.pop()
            request.postpath.insert(0, path)
        redact_request(request)
        return self._leaf

    async def _async_render(self, request: SynapseRequest) -> None:
        redact_request(request)  # a request for BASE_PATH itself walks no further
        path = b"/".join(request.postpath or []).decode("utf-8", errors="replace").strip("/")
        method = request.method.decode("ascii", errors="replace")
        handler = self._routes.get((method, path))
        if handler is None and method == "HEAD":
            handler = self._routes.get(("GET", path))
        if handler is None:
            handler = _match_pattern(self._routes, method, path)
        if handler is not None:
            await handler(request)
            return
        if path in self._paths:
            respond_json(request, 405, {"errcode": "M_UNRECOGNIZED", "error": "Method not allowed"})
        else:
            respond_json(request, 404, {"errcode": "M_UNRECOGNIZED", "error": "Unknown path"})


def _match_pattern(
    routes: Mapping[tuple[str, str], Handler], method: str, path: str
) -> Handler | None:
    """Routes may end in `/*`: the handler gets the rest from request.postpath."""
    for (route_method, route_path), handler in routes.items():
        if route_method != method or not route_path.endswith("/*"):
            continue
        if path.startswith(route_path[:-1]) and len(path) > len(route_path) - 1:
            return handler
    return None
