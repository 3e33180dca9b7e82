"""One Twisted resource under /_synapse/client/email_gate that routes to handlers.

Handlers write their answer themselves and return nothing: refusals are
answered, not raised, which keeps garbage low under a flood (see the notes on
Synapse's garbage collection in docs/internals.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from synapse.http.server import DirectServeJsonResource
from synapse.http.site import SynapseRequest

from synapse_email_gate.web.http import respond_json

logger = logging.getLogger(__name__)

BASE_PATH = "/_synapse/client/email_gate"

Handler = Callable[[SynapseRequest], Awaitable[None]]


class GateResource(DirectServeJsonResource):
    isLeaf = True

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        super().__init__()
        self._routes = routes
        self._paths = {path for _, path in routes}

    async def _async_render(self, request: SynapseRequest) -> None:
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
