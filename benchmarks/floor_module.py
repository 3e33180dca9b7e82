"""A do-nothing Synapse module: the floor the module's answers are measured against.

Loaded into the same Synapse as the email gate, as a second `modules:` entry
(benchmarks/common.py `with_floor`), it serves

    POST /_synapse/client/email_gate_floor/refuse    -> 429 {"errcode": "M_LIMIT_EXCEEDED", ...}
    POST /_synapse/client/email_gate_floor/accept    -> 202 {"status": "accepted"}

Each parses the JSON body as the gate's API does (a JSON object with a
username and an email) and writes its answer straight to the request from a
synchronous Twisted resource: no routing, no log context, no Deferred, no
database. It is the least a module can do to answer such a request, so what
the gate's answer costs above it is the gate's own work.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

PATH = "/_synapse/client/email_gate_floor"

_REFUSED = json.dumps(
    {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too many requests. Please wait before trying again.",
        "retry_after_ms": 1000,
    },
    separators=(",", ":"),
).encode()
_ACCEPTED = b'{"status":"accepted"}'
_BAD = b'{"errcode":"M_NOT_JSON","error":"not a JSON object"}'


class FloorResource(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> Any:
        raw = request.content.read() if request.content is not None else b""
        data = json.loads(raw)
        if not isinstance(data, dict) or "username" not in data or "email" not in data:
            status, body = 400, _BAD
        elif request.postpath and request.postpath[-1] == b"accept":
            status, body = 202, _ACCEPTED
        else:
            status, body = 429, _REFUSED
            request.setHeader(b"Retry-After", b"1")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(len(body)).encode())
        request.write(body)
        request.finish()
        return NOT_DONE_YET


class FloorModule:
    def __init__(self, config: dict[str, Any], api: Any) -> None:
        api.register_web_resource(PATH, FloorResource())

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config
