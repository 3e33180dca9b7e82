"""The router's table: every (method, path) below BASE_PATH and its handler.

Declared once, here, so that the module wires it and the tests read it: the API
description (web/openapi.py) must name every route in it and no other.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from synapse.http.site import SynapseRequest

from synapse_email_gate.web import openapi
from synapse_email_gate.web.admin import AdminHandlers
from synapse_email_gate.web.finish import FinishHandlers
from synapse_email_gate.web.handlers import RequestHandlers
from synapse_email_gate.web.http import respond
from synapse_email_gate.web.resource import EarlyHandler, Handler

_DESCRIPTION = openapi.render()


async def serve_description(request: SynapseRequest) -> None:
    """GET admin/openapi.json: public, like the docs it is kept with (any site may read it)."""
    respond(request, 200, "application/json", _DESCRIPTION, {"Access-Control-Allow-Origin": "*"})


@attrs.frozen
class WebHandlers:
    pages: RequestHandlers
    finish: FinishHandlers
    admin: AdminHandlers


@attrs.frozen
class GateRoute:
    """`path` is below BASE_PATH; one ending in `/*` takes every path below it (exact
    routes win). `needs_tables`: answer 503 until the module's tables exist."""

    method: str
    path: str
    handler: Callable[[WebHandlers], Handler]
    needs_tables: bool = True


GATE_ROUTES: tuple[GateRoute, ...] = (
    GateRoute("GET", "", lambda h: h.pages.page),
    GateRoute("POST", "", lambda h: h.pages.form_post),
    GateRoute("POST", "api/request", lambda h: h.pages.api_request),
    GateRoute("GET", "api/challenge", lambda h: h.pages.challenge),
    GateRoute("GET", "register", lambda h: h.finish.landing),
    GateRoute("POST", "register", lambda h: h.finish.submit),
    GateRoute("GET", "verify", lambda h: h.pages.verify_page),
    GateRoute("POST", "verify", lambda h: h.pages.verify_post),
    GateRoute("GET", "static/*", lambda h: h.pages.static, needs_tables=False),
    GateRoute("GET", "admin", lambda h: h.admin.page, needs_tables=False),
    GateRoute("GET", "admin/openapi.json", lambda h: serve_description, needs_tables=False),
    GateRoute("GET", "admin/*", lambda h: h.admin.handle),
    GateRoute("POST", "admin/*", lambda h: h.admin.handle),
    GateRoute("PATCH", "admin/*", lambda h: h.admin.handle),
    GateRoute("DELETE", "admin/*", lambda h: h.admin.handle),
)


def gate_routes(
    handlers: WebHandlers, when_ready: Callable[[Handler], Handler]
) -> dict[tuple[str, str], Handler]:
    """The table with its handlers, for GateResource."""
    return {
        (route.method, route.path): (
            when_ready(route.handler(handlers)) if route.needs_tables else route.handler(handlers)
        )
        for route in GATE_ROUTES
    }


def early_routes(handlers: WebHandlers) -> dict[tuple[bytes, bytes], EarlyHandler]:
    """Routes that may be answered from memory before the handler above runs
    (GateLeafResource): they answer nothing that needs the module's tables."""
    return {(b"POST", b"api/request"): handlers.pages.api_request_from_memory}
