"""Small HTTP helpers: answers with the module's security headers, bodies, cookies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qs

from synapse.http.server import finish_request
from synapse.http.site import SynapseRequest

from synapse_email_gate.netrules import IpRules, client_ip

MAX_BODY = 16 * 1024

# Pages load only their own CSS and JS; nothing may frame them or be framed.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def request_client_ip(request: SynapseRequest, trusted_proxies: IpRules) -> str:
    """The person's address: the peer, or the hop X-Forwarded-For names when the peer
    is a trusted proxy (docs/rules.md#client-address-and-proxies)."""
    peer: str = getattr(request.getClientAddress(), "host", None) or "0.0.0.0"  # noqa: S104
    forwarded = [
        value.decode("latin-1")
        for value in request.requestHeaders.getRawHeaders(b"X-Forwarded-For") or []
    ]
    return client_ip(peer, forwarded, trusted_proxies)


def respond(
    request: SynapseRequest,
    status: int,
    content_type: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> None:
    request.setResponseCode(status)
    if request._disconnected:
        return
    all_headers = dict(_COMMON_HEADERS)
    if content_type.startswith("text/html"):
        all_headers["Content-Security-Policy"] = PAGE_CSP
        all_headers["X-Frame-Options"] = "DENY"
    all_headers.update(headers or {})
    all_headers["Content-Type"] = content_type
    all_headers["Content-Length"] = str(len(body))
    for name, value in all_headers.items():
        request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    request.write(body)
    finish_request(request)


def respond_json(
    request: SynapseRequest,
    status: int,
    body: object,
    headers: Mapping[str, str] | None = None,
) -> None:
    respond(
        request,
        status,
        "application/json",
        json.dumps(body, separators=(",", ":")).encode("utf-8"),
        headers,
    )


def respond_html(
    request: SynapseRequest, status: int, html: str, headers: Mapping[str, str] | None = None
) -> None:
    respond(request, status, "text/html; charset=utf-8", html.encode("utf-8"), headers)


def read_body(request: SynapseRequest) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    if request.content is None:
        return b""
    request.content.seek(0)
    body = request.content.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def content_type(request: SynapseRequest) -> str:
    raw: str = request.getHeader("Content-Type") or ""
    return raw.split(";", 1)[0].strip().lower()


def form_fields(body: bytes) -> dict[str, str]:
    """The first value of each field of an urlencoded form."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def query_param(request: SynapseRequest, name: str) -> str | None:
    values: list[bytes] | None = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    return values[0].decode("utf-8", errors="replace")


def cookie(request: SynapseRequest, name: str) -> str | None:
    raw: bytes | None = request.getCookie(name.encode("ascii"))
    return None if raw is None else raw.decode("ascii", errors="replace")


def set_cookie_header(name: str, value: str, path: str, secure: bool) -> str:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
