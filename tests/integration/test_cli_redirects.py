"""The CLI and redirects, against real HTTP servers on loopback: the access token
is never sent to another origin, a redirect within the server's origin is
followed, and plain http beyond this machine draws a warning."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from synapse_email_gate.cli import main
from tests.harness.ports import free_port

SECRET = "syt_redirect_test_secret_4711"
ADMIN = "/_synapse/client/email_gate/admin/"


class Server:
    """A loopback HTTP server that records what it is sent and answers by path:
    a redirect for the paths in `redirects`, else 200 with a JSON body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.redirects: dict[str, tuple[int, str]] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                path = self.path.split("?", 1)[0]
                if path in owner.redirects:
                    code, location = owner.redirects[path]
                    self.send_response(code)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"tokens": [], "status": "reloaded", "message": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server()
    yield made
    made.close()


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    made = Server()
    yield made
    made.close()


def run(capsys: pytest.CaptureFixture[str], server: str, *args: str) -> tuple[int, str, str]:
    status = main(["--server", server, "--token", SECRET, *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("code", "command", "path"),
    [
        (302, ("tokens", "list"), "tokens"),
        (301, ("tokens", "list"), "tokens"),
        (307, ("tokens", "list"), "tokens"),
        (308, ("tokens", "list"), "tokens"),
        (303, ("reload",), "reload"),
        (307, ("reload",), "reload"),
    ],
)
def test_a_redirect_to_another_origin_is_refused_and_gets_no_token(
    capsys: pytest.CaptureFixture[str],
    server: Server,
    elsewhere: Server,
    code: int,
    command: tuple[str, ...],
    path: str,
) -> None:
    server.redirects[ADMIN + path] = (code, elsewhere.url(ADMIN + path + "?from=redirect"))
    status, out, err = run(capsys, server.url(), *command)
    assert status == 1, (out, err)
    assert "CROSS_ORIGIN_REDIRECT" in err
    assert f"redirected to http://127.0.0.1:{elsewhere.port}{ADMIN}{path}, another origin" in err
    assert f"stays with http://127.0.0.1:{server.port}" in err
    assert elsewhere.received == []
    assert [r["authorization"] for r in server.received] == [f"Bearer {SECRET}"]
    assert SECRET not in out + err


def test_another_host_name_or_scheme_on_the_same_port_is_another_origin(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    server.redirects[ADMIN + "tokens"] = (302, server.url(ADMIN + "moved", host="localhost"))
    status, _, err = run(capsys, server.url(), "tokens", "list")
    assert status == 1 and "CROSS_ORIGIN_REDIRECT" in err
    server.redirects[ADMIN + "tokens"] = (302, f"https://127.0.0.1:{server.port}{ADMIN}moved")
    status, _, err = run(capsys, server.url(), "tokens", "list")
    assert status == 1 and "CROSS_ORIGIN_REDIRECT" in err
    assert [r["path"] for r in server.received] == [ADMIN + "tokens"] * 2


def test_a_redirect_within_the_origin_is_followed_with_the_token(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    server.redirects[ADMIN + "tokens"] = (302, ADMIN + "tokens-moved")
    status, out, err = run(capsys, server.url(), "tokens", "list")
    assert status == 0, (out, err)
    assert [(r["path"], r["authorization"]) for r in server.received] == [
        (ADMIN + "tokens", f"Bearer {SECRET}"),
        (ADMIN + "tokens-moved", f"Bearer {SECRET}"),
    ]


def test_plain_http_warns_unless_the_server_is_this_machine(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    status, _, err = run(capsys, server.url(), "tokens", "list")
    assert status == 0 and "plain http" not in err
    status, _, err = run(capsys, server.url(host="localhost"), "tokens", "list")
    assert status == 0 and "plain http" not in err
    # 192.0.2.0/24 is for documentation: nothing answers there.
    status, _, err = run(capsys, "http://192.0.2.1:9", "--timeout", "0.2", "tokens", "list")
    assert status == 3
    assert "warning: http://192.0.2.1:9 is plain http" in err and "use https://" in err
