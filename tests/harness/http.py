"""A tiny HTTP client for tests: stdlib only, never raises on 4xx/5xx."""

from __future__ import annotations

import json as jsonlib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from http.cookies import SimpleCookie
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes
    url: str = ""
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url} {self.body[:200]!r}>"


def request(
    method: str,
    url: str,
    json: Any = None,
    form: dict[str, str] | list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    timeout: float = 30.0,
    data: bytes | None = None,
) -> Response:
    """Send one request (`data`: a raw body); redirects are not followed (the 3xx is
    returned)."""
    hdrs = dict(headers or {})
    if json is not None:
        data = jsonlib.dumps(json).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method.upper())
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, resp_headers, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, resp_headers, body = e.code, e.headers, e.read()
    jar: SimpleCookie = SimpleCookie()
    for value in resp_headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return Response(status, resp_headers, body, url, {k: m.value for k, m in jar.items()})


def get(url: str, **kwargs: Any) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    return request("POST", url, **kwargs)
