"""The command-line tool's HTTP side: the admin API through urllib (stdlib only).

`AdminClient.call` returns the decoded JSON answer, or raises `Refused` (the
server answered 4xx/5xx; exit code 1) or `Unreachable` (no answer; exit code 3).
The access token goes into the Authorization header and nowhere else: no
message built here contains it. Redirects are followed only within the
server's origin (scheme, host and port); a redirect anywhere else is refused
(`RedirectRefused`, exit code 1) before anything is sent there, so the access token
never reaches another server.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

ADMIN_PATH = "/_synapse/client/email_gate/admin/"
USER_AGENT = "synapse-email-gate-cli"
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class Refused(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, errcode: str, error: str) -> None:
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


class RedirectRefused(Refused):
    """The server redirected to another origin; the request was not sent there."""


class Unreachable(Exception):
    """No HTTP answer: DNS, refused connection, TLS failure, timeout."""


class BadServerUrl(ValueError):
    """The server URL is not an http(s) URL."""


def admin_base_url(server: str) -> str:
    """`https://matrix.example.org` (or any URL under it) -> the admin API's base URL.

    A URL that already contains the module's path is cut back to the server part,
    so both `https://host` and `https://host/_synapse/client/email_gate/admin`
    work.
    """
    text = server.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadServerUrl(
            f"server URL must start with http:// or https://, like https://matrix.example.org;"
            f" got {_redact_url(text)!r}"
        )
    if "@" in parts.netloc:
        raise BadServerUrl("server URL must not contain a user name or password")
    path = parts.path
    cut = path.find("/_synapse/")
    if cut >= 0:
        path = path[:cut]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", "")) + (
        ADMIN_PATH
    )


def _redact_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if "@" in parts.netloc:
        return "<url with credentials>"
    return text


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # unparsable: matches no real origin
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port if port is not None else default


def is_loopback_host(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_warning(base_url: str) -> str | None:
    """A warning when the access token would travel unencrypted beyond this machine."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return None
    return (
        f"warning: {parts.scheme}://{parts.netloc} is plain http: the access token"
        " crosses the network unencrypted; use https://"
    )


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the origin of the request it answers."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            fp.close()
            raise RedirectRefused(
                code,
                "CROSS_ORIGIN_REDIRECT",
                f"the server redirected to {_redact_url(_without_query(newurl))}, another origin;"
                " not following it, so that the access token stays with"
                f" {_origin_text(req.full_url)}. If that is the right server, give it as --server",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _without_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _origin_text(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def segment(value: str) -> str:
    """One path segment, percent-encoded (a moderator regex may contain `/`)."""
    return urllib.parse.quote(value, safe="")


class AdminClient:
    def __init__(self, server: str, access_token: str, timeout: float = 30.0) -> None:
        self.base_url = admin_base_url(server)
        self._access_token = access_token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_SameOriginRedirects)

    def __repr__(self) -> str:  # never show the access token
        return f"AdminClient({self.base_url!r})"

    def get(self, path: str, query: dict[str, str | int | None] | None = None) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body=body if body is not None else {})

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str | int | None] | None = None,
    ) -> Any:
        url = self.base_url + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {
            "Authorization": f"Bearer {self._access_token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        # The scheme is checked to be http(s) in admin_base_url.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                raw = answer.read(MAX_ANSWER_BYTES)
                status = int(answer.status)
        except urllib.error.HTTPError as e:
            raw = e.read(MAX_ANSWER_BYTES) if e.fp is not None else b""
            raise _refusal(e.code, raw, self.base_url) from None
        except urllib.error.URLError as e:
            raise Unreachable(f"cannot connect to {self.base_url}: {_reason(e.reason)}") from None
        except TimeoutError:
            raise Unreachable(f"no answer from {self.base_url} within {self._timeout:g}s") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"cannot connect to {self.base_url}: {_reason(e)}") from None
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise Refused(
                status, "NOT_JSON", f"the server answered HTTP {status} without JSON"
            ) from None


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message})"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _refusal(status: int, raw: bytes, base_url: str) -> Refused:
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        errcode = str(answer.get("errcode") or "M_UNKNOWN")
        error: str = answer["error"]
        if status == 404 and errcode == "M_UNRECOGNIZED":
            error += (
                " (the server does not know this call: is synapse_email_gate loaded there,"
                " and is it a version that has it?)"
            )
        return Refused(status, errcode, error)
    snippet = raw[:200].decode("utf-8", "replace").strip()
    hint = ""
    if status == 404:
        hint = f" (is {base_url} a Synapse with synapse_email_gate?)"
    detail = f": {snippet}" if snippet and not snippet.lstrip().startswith("<") else ""
    return Refused(status, f"HTTP_{status}", f"HTTP {status}{detail}{hint}")
