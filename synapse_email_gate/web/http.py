"""Small HTTP helpers: answers with the module's security headers, bodies, cookies."""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import attrs
from synapse.http.server import finish_request
from synapse.http.site import SynapseRequest

from synapse_email_gate.rules.ips import IpRules, client_ip

MAX_BODY = 16 * 1024
# The pages' forms are protected by a double submit: one random value in a cookie
# (SameSite=Strict) and in the form's hidden `csrf` field.
CSRF_COOKIE = "email_gate_csrf"

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


_PAGE_HEADERS = {**_COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"}
# The same, encoded once: most answers (every refusal of a flood) add nothing to them.
_COMMON_RAW = tuple((k.encode("ascii"), v.encode("utf-8")) for k, v in _COMMON_HEADERS.items())
_PAGE_RAW = tuple((k.encode("ascii"), v.encode("utf-8")) for k, v in _PAGE_HEADERS.items())


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
    page = content_type.startswith("text/html")
    if headers:
        all_headers = dict(_PAGE_HEADERS if page else _COMMON_HEADERS)
        all_headers.update(headers)
        for name, value in all_headers.items():
            request.setHeader(name.encode("ascii"), value.encode("utf-8"))
    else:
        for raw_name, raw_value in _PAGE_RAW if page else _COMMON_RAW:
            request.setHeader(raw_name, raw_value)
    request.setHeader(b"Content-Type", content_type.encode("ascii"))
    request.setHeader(b"Content-Length", b"%d" % len(body))
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


# Deeper than any body of ours; bounds the work a body can cause after parsing.
MAX_JSON_DEPTH = 16
# Matrix's canonical JSON range: larger integers lose precision in many parsers.
MAX_JSON_INT = 2**53 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
# PostgreSQL cannot store NUL in text, and no value of ours holds one.
_NUL = "\x00"


@attrs.frozen
class JsonProblem:
    """Why a request body is not a usable JSON object: always answered `400`."""

    errcode: str
    message: str

    def json(self) -> dict[str, str]:
        return {"errcode": self.errcode, "error": self.message}


class _Refused(ValueError):
    def __init__(self, problem: JsonProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _bad(message: str) -> JsonProblem:
    return JsonProblem("M_BAD_JSON", message)


def _not_json(message: str) -> JsonProblem:
    return JsonProblem("M_NOT_JSON", message)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Refused(_bad("The request body has a duplicate key in an object."))
    return obj


def _constant(name: str) -> Any:
    raise _Refused(_not_json(f"The request body is not valid JSON ({name} is not a JSON value)."))


def _integer(text: str) -> int:
    # Long digit strings are refused before int(), which is slow for them.
    value = int(text) if len(text.lstrip("-")) <= 16 else None
    if value is None or abs(value) > MAX_JSON_INT:
        raise _Refused(_bad("The request body has an integer out of range."))
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(_bad("The request body has a number out of range."))
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_constant,
    parse_int=_integer,
    parse_float=_float,
)


def parse_json_object(raw: bytes) -> dict[str, Any] | JsonProblem:
    """A request body as a JSON object, or why not (returned, not raised).

    Every body a client can send ends here: strict UTF-8, no NaN or Infinity,
    no duplicate keys, integers within ±(2**53 - 1), finite numbers, no lone
    surrogates in strings, at most MAX_JSON_DEPTH levels of nesting.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _not_json("The request body is not valid UTF-8.")
    try:
        data = _DECODER.decode(text)
    except _Refused as e:
        return e.problem
    except RecursionError:
        return _too_deep()
    except ValueError:
        return _not_json("The request body is not valid JSON.")
    if not isinstance(data, dict):
        return _bad("The request body must be a JSON object.")
    if "\\u" not in text and "[" not in text and text.count("{") == 1:
        # Flat, and no escapes: the decoder (strict) lets a surrogate or a NUL into a
        # string only from an escape, so there is nothing for the walk to find.
        return data
    return _shape_problem(data) or data


def _too_deep() -> JsonProblem:
    return _bad(f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")


def _shape_problem(data: dict[str, Any]) -> JsonProblem | None:
    """Depth and text checks, without recursion (the decoder already bounded the depth
    by Python's recursion limit; this bounds it by ours)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = [item for pair in value.items() for item in pair]
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return _too_deep()
        for item in items:
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return _bad("The request body has text that is not valid Unicode.")
                if _NUL in item:
                    return _bad("The request body has text with a NUL character.")
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return None


def content_type(request: SynapseRequest) -> str:
    raw: str = request.getHeader("Content-Type") or ""
    return raw.split(";", 1)[0].strip().lower()


def form_fields(body: bytes) -> dict[str, str]:
    """The first value of each field of an urlencoded form."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {readable(name): readable(values[0]) for name, values in parsed.items()}


def query_param(request: SynapseRequest, name: str) -> str | None:
    values: list[bytes] | None = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    return readable(values[0].decode("utf-8", errors="replace"))


def readable(text: str) -> str:
    """Text from a URL or a form with each NUL read as U+FFFD, like a byte that is not
    UTF-8: no stored value holds either, and PostgreSQL refuses NUL in a query."""
    return text.replace(_NUL, "\ufffd")


def cookie(request: SynapseRequest, name: str) -> str | None:
    raw: bytes | None = request.getCookie(name.encode("ascii"))
    return None if raw is None else raw.decode("ascii", errors="replace")


def set_cookie_header(name: str, value: str, path: str, secure: bool) -> str:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_cookie(request: SynapseRequest) -> str:
    """The request's CSRF cookie; empty without one."""
    return cookie(request, CSRF_COOKIE) or ""


def csrf_matches(request: SynapseRequest, fields: Mapping[str, str]) -> bool:
    """The form's `csrf` field is the request's CSRF cookie (and there is one)."""
    sent = csrf_cookie(request)
    # Bytes: compare_digest raises TypeError for text that is not ASCII (a 500).
    return bool(sent) and hmac.compare_digest(sent.encode(), fields.get("csrf", "").encode())
