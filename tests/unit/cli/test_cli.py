"""The `synapse-email-gate` command without Synapse: argument parsing, credentials,
tables, what each subcommand sends (to a stub HTTP server), exit codes, and
check-config on good and broken files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_email_gate.cli import build_parser, main
from synapse_email_gate.cli import format as fmt
from synapse_email_gate.cli.client import admin_base_url, plain_http_warning
from synapse_email_gate.rules.identifiers import new_id
from tests.harness.ports import free_port

ACCESS_TOKEN = "syt_secret_access_token_123"
ADMIN = "/_synapse/client/email_gate/admin/"


# --- a stub admin API ------------------------------------------------------------------


class StubApi:
    """Answers (method, path) from `answers`; records every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.url = ""

    def answer(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.answers[(method, ADMIN + path)] = (status, {} if body is None else body)

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1]


@pytest.fixture
def api() -> Iterator[StubApi]:
    stub = StubApi()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            stub.calls.append(
                {
                    "method": self.command,
                    "path": path,
                    "query": query,
                    "auth": self.headers.get("Authorization"),
                    "body": json.loads(raw) if raw else None,
                }
            )
            status, body = stub.answers.get(
                (self.command, path), (404, {"errcode": "M_UNRECOGNIZED", "error": "Unknown path"})
            )
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMAIL_GATE_SERVER", "EMAIL_GATE_TOKEN", "EMAIL_GATE_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(api: StubApi, *args: str) -> int:
    return main(["--server", api.url, "--token", ACCESS_TOKEN, *args])


TOKEN = {
    "token": "ABC123",
    "uses_allowed": 3,
    "pending": 0,
    "completed": 1,
    "expiry_time": 1_800_000_000_000,
    "reserved_for": None,
    "uses_left": 2,
    "valid": True,
    "expires": "in 7 days (2027-01-15 08:00 UTC)",
    "kind": "invite",
    "state": "active",
}


# --- parsing ------------------------------------------------------------------------------

HELP_PATHS = [
    [],
    ["tokens"],
    ["tokens", "list"],
    ["tokens", "show"],
    ["tokens", "create"],
    ["tokens", "delete"],
    ["tokens", "delete-all"],
    ["requests"],
    ["requests", "list"],
    ["requests", "show"],
    ["requests", "approve"],
    ["requests", "deny"],
    ["bans"],
    ["bans", "list"],
    ["bans", "add"],
    ["bans", "remove"],
    ["moderators"],
    ["moderators", "list"],
    ["moderators", "allow"],
    ["moderators", "disallow"],
    ["reload"],
    ["audit"],
    ["check-config"],
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "top")
def test_help_at_every_level(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert "usage: synapse-email-gate" in capsys.readouterr().out


def test_top_level_help_documents_exit_codes_and_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for words in ("EMAIL_GATE_SERVER", "EMAIL_GATE_TOKEN", "3  cannot connect", "2  usage"):
        assert words in out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["tokens"],
        ["tokens", "show"],
        ["tokens", "create", "--uses", "2", "--unlimited"],
        ["tokens", "create", "--token", "a", "--length", "5"],
        ["tokens", "create", "--count", "0"],
        ["tokens", "create", "--uses", "-1"],
        ["requests", "list", "--limit", "many"],
        ["requests", "list", "--bogus"],
        ["requests", "approve", "-x"],
        ["bans", "add", "planet", "x"],
        ["bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "error" in capsys.readouterr().err


def test_options_work_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--server", "http://a", "tokens", "list"])
    after = parser.parse_args(["tokens", "list", "--json", "--server", "http://a"])
    for args in (before, after):
        assert args.json is True and args.server == "http://a" and args.timeout == 30.0


def test_create_token_flag_names_the_new_token_not_the_access_token() -> None:
    args = build_parser().parse_args(["--token", "access", "tokens", "create", "--token", "mine"])
    assert args.access_token == "access" and args.new_token == "mine"


def test_server_url_forms() -> None:
    assert admin_base_url("https://m.example.org") == "https://m.example.org" + ADMIN
    assert admin_base_url("https://m.example.org/") == "https://m.example.org" + ADMIN
    assert admin_base_url("http://h:8008/_synapse/client/email_gate/admin") == (
        "http://h:8008" + ADMIN
    )
    assert admin_base_url("https://h/prefix/") == "https://h/prefix" + ADMIN


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("https://matrix.example.org", False),
        ("http://localhost:8008", False),
        ("http://127.0.0.1:8008", False),
        ("http://127.8.0.1", False),
        ("http://[::1]:8008", False),
        ("http://matrix.example.org", True),
        ("http://192.168.1.10:8008", True),
        ("http://localhost.example.org", True),
    ],
)
def test_plain_http_beyond_this_machine_is_warned_about(url: str, warned: bool) -> None:
    warning = plain_http_warning(admin_base_url(url))
    assert (warning is not None) is warned
    if warning is not None:
        assert "unencrypted" in warning and "https://" in warning


# --- credentials --------------------------------------------------------------------------


def test_missing_server_or_token_is_a_usage_error(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokens", "list"]) == 2
    assert "EMAIL_GATE_SERVER" in capsys.readouterr().err
    assert main(["--server", api.url, "tokens", "list"]) == 2
    assert "EMAIL_GATE_TOKEN" in capsys.readouterr().err
    assert api.calls == []


@pytest.mark.parametrize("url", ["matrix.example.org", "ftp://x", "file:///etc/passwd"])
def test_a_server_that_is_not_http_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--server", url, "--token", "t", "reload"]) == 2
    assert "http://" in capsys.readouterr().err


def test_token_from_environment_and_file(
    api: StubApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer("POST", "reload", body={"status": "reloaded", "message": "ok"})
    monkeypatch.setenv("EMAIL_GATE_SERVER", api.url)
    monkeypatch.setenv("EMAIL_GATE_TOKEN", "from-env")
    assert main(["reload"]) == 0
    assert api.last["auth"] == "Bearer from-env"

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert main(["--token-file", str(token_file), "reload"]) == 0
    assert api.last["auth"] == "Bearer from-file"

    monkeypatch.delenv("EMAIL_GATE_TOKEN")
    monkeypatch.setenv("EMAIL_GATE_TOKEN_FILE", str(token_file))
    assert main(["reload"]) == 0
    assert api.last["auth"] == "Bearer from-file"


def test_bad_token_sources_are_usage_errors(
    api: StubApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--server", api.url]
    assert main([*base, "--token", "a", "--token-file", "f", "reload"]) == 2
    assert main([*base, "--token-file", str(tmp_path / "missing"), "reload"]) == 2
    assert "cannot read the access token file" in capsys.readouterr().err
    assert main([*base, "--token", "two words", "reload"]) == 2
    assert main([*base, "--token", "line\nbreak", "reload"]) == 2
    assert api.calls == []


# --- tables -------------------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_blanks() -> None:
    rows = [{"a": "x", "b": None}, {"a": "longer", "b": 7}]
    text = fmt.table(rows, [("A", lambda r: r["a"]), ("B", lambda r: r["b"])])
    assert text.splitlines() == ["A       B", "x       -", "longer  7"]


def test_control_characters_from_user_input_are_shown_escaped() -> None:
    assert fmt.clean("evil\x1b[31mred") == "evil\\x1b[31mred"
    assert fmt.clean(True) == "yes" and fmt.clean(None) == "-"


def test_token_table_shows_uses_left_and_expiry_in_words() -> None:
    unlimited = {**TOKEN, "token": "FREE", "uses_allowed": None, "uses_left": None}
    unlimited.update(expires="never", pending=1)
    lines = fmt.table([TOKEN, unlimited], fmt.TOKEN_COLUMNS).splitlines()
    assert lines[0].split() == ["TOKEN", "KIND", "STATE", "USES", "LEFT", "USED", "EXPIRES", "FOR"]
    assert lines[1].split()[:5] == ["ABC123", "invite", "active", "2", "1/3"]
    assert "in 7 days (2027-01-15 08:00 UTC)" in lines[1]
    assert "unlimited" in lines[2] and "1/∞ (+1 pending)" in lines[2] and "never" in lines[2]
    # the EXPIRES column starts at the same place on every line
    assert lines[1].index("in 7 days") == lines[2].index("never") == lines[0].index("EXPIRES")


def test_timestamps_are_utc() -> None:
    assert fmt.when(0) == "1970-01-01 00:00 UTC"
    assert fmt.when(None) == "-"


# --- commands against the stub ------------------------------------------------------------


def test_tokens_list_table_and_json(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer("GET", "tokens", body={"tokens": [TOKEN]})
    assert run(api, "tokens", "list", "--valid") == 0
    assert api.last["query"] == "valid=true" and api.last["auth"] == f"Bearer {ACCESS_TOKEN}"
    out = capsys.readouterr().out
    assert out.startswith("TOKEN") and "ABC123" in out

    assert run(api, "--json", "tokens", "list") == 0
    assert api.last["query"] == ""
    assert json.loads(capsys.readouterr().out) == {"tokens": [TOKEN]}


def test_empty_lists_say_so(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer("GET", "tokens", body={"tokens": []})
    assert run(api, "tokens", "list") == 0
    assert capsys.readouterr().out.strip() == "No invite tokens."


def test_tokens_create_sends_what_was_asked(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer("POST", "tokens", 201, TOKEN)
    assert run(api, "tokens", "create") == 0
    assert api.last["body"] == {}
    assert run(api, "tokens", "create", "--unlimited", "--expiry", "never", "--length", "8") == 0
    assert api.last["body"] == {"uses_allowed": None, "expiry": "never", "length": 8}
    assert (
        run(api, "tokens", "create", "--uses", "5", "--expiry", "2030-01-01", "--token", "x") == 0
    )
    assert api.last["body"] == {"uses_allowed": 5, "expiry": "2030-01-01", "token": "x"}
    capsys.readouterr()

    calls = len(api.calls)
    assert run(api, "tokens", "create", "--count", "3", "-q") == 0
    assert len(api.calls) == calls + 3
    assert capsys.readouterr().out.split() == ["ABC123"] * 3
    assert run(api, "tokens", "create", "--count", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [TOKEN, TOKEN]


def test_a_chosen_token_cannot_be_created_twice_over(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(api, "tokens", "create", "--token", "x", "--count", "2") == 2
    assert api.calls == []


def test_tokens_show_exits_1_when_one_is_missing(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer("GET", "tokens/ABC123", body=TOKEN)
    api.answer("GET", "tokens/GONE", 404, {"errcode": "M_NOT_FOUND", "error": "token not found"})
    assert run(api, "tokens", "show", "ABC123", "GONE") == 1
    captured = capsys.readouterr()
    assert "uses left:" in captured.out and "ABC123" in captured.out
    assert "GONE: token not found" in captured.err


def test_tokens_delete_reports_the_missing(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer("POST", "tokens/delete", body={"deleted": ["A"]})
    assert run(api, "tokens", "delete", "A", "B", "A") == 1
    assert api.last["body"] == {"tokens": ["A", "B"]}
    captured = capsys.readouterr()
    assert "deleted A" in captured.out and "B: token not found" in captured.err


def test_delete_all_needs_yes(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", "delete-all"]) == 2  # refuses before needing a server
    assert "--yes" in capsys.readouterr().err
    api.answer("POST", "tokens/delete_all", body={"deleted_count": 4})
    assert run(api, "tokens", "delete-all", "--yes") == 0
    assert api.last["body"] == {"confirm": "delete all tokens"}
    assert "deleted 4 tokens" in capsys.readouterr().out


def test_requests_list_passes_filters_and_shows_more(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    row = {"id": "r1", "created_ts": 0, "localpart": "alice", "email": "a@x.org", "ip": "::1"}
    api.answer("GET", "requests", body={"requests": [{**row, "status": "pending"}], "next_from": 1})
    assert (
        run(api, "requests", "list", "--status", "pending", "--search", "al", "--limit", "1") == 0
    )
    assert api.last["query"] == "status=pending&q=al&limit=1"
    out = capsys.readouterr().out
    assert "alice" in out and "pending" in out and "(more: add --from 1)" in out


def test_requests_show_with_mails_and_history(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer(
        "GET",
        "requests/r%2F1",
        body={
            "id": "r/1",
            "localpart": "bob",
            "status": "denied",
            "decision_message": "Full.",
            "new_field": "shown too",
            "mails": [{"kind": "denied", "status": "sent", "attempts": 1, "created_ts": 0}],
            "history": [{"ts": 0, "actor": "@m:x", "action": "request.deny", "detail": "Full."}],
        },
    )
    assert run(api, "requests", "show", "r/1") == 0
    out = capsys.readouterr().out
    assert "decision message: Full." in out and "new_field" in out
    assert "Mails:" in out and "History:" in out and "request.deny" in out


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_approve_and_deny_post_to_the_request(
    verb: str, api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    status = "issued" if verb == "approve" else "denied"
    api.answer("POST", f"requests/r1/{verb}", body={"id": "r1", "status": status})
    assert run(api, "requests", verb, "r1") == 0
    assert api.last["body"] == {}
    assert f"request r1 (status: {status})" in capsys.readouterr().out
    assert run(api, "requests", verb, "r1", "--message", "Welcome") == 0
    assert api.last["body"] == {"message": "Welcome"}


def test_ids_and_tokens_beginning_with_a_dash_are_values(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # CI once drew the request id "-u9cmz10TH--CyI2", and argparse took it for an option.
    dashed = "-u9cmz10TH--CyI2"
    api.answer("POST", f"requests/{dashed}/deny", body={"id": dashed, "status": "denied"})
    assert run(api, "requests", "deny", dashed, "--message", "Full") == 0
    assert api.last["path"] == f"{ADMIN}requests/{dashed}/deny"
    assert api.last["body"] == {"message": "Full"}
    assert f"request {dashed} (status: denied)" in capsys.readouterr().out
    args = build_parser().parse_args(["tokens", "delete", "-abc", "-q-x", "--json"])
    assert args.tokens == ["-abc", "-q-x"] and args.json is True
    assert build_parser().parse_args(["tokens", "create", "-q"]).quiet is True


def test_new_ids_never_begin_with_a_dash() -> None:
    # One in 64 URL-safe ids would; 5,000 draws miss that with odds below 1e-30.
    assert not [i for i in (new_id() for _ in range(5000)) if i.startswith("-")]
    assert len({new_id() for _ in range(1000)}) == 1000


def test_bans(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    ban = {"id": "b1", "kind": "ip", "match": "10.0.0.0/8", "reason": "r", "expires_ts": None}
    api.answer("POST", "bans", 201, ban)
    assert run(api, "bans", "add", "ip", "10.0.0.0/8", "--reason", "r", "--expires", "30d") == 0
    assert api.last["body"] == {
        "kind": "ip",
        "match": "10.0.0.0/8",
        "reason": "r",
        "expires": "30d",
    }
    assert "added ban b1" in capsys.readouterr().out

    api.answer("GET", "bans", body={"bans": [{**ban, "active": True, "created_by": "@m:x"}]})
    assert run(api, "bans", "list") == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[:5] == ["b1", "ip", "10.0.0.0/8", "r", "never"]

    api.answer("DELETE", "bans/b1", body={"removed": "b1"})
    assert run(api, "bans", "remove", "b1") == 0
    assert "removed ban b1" in capsys.readouterr().out


def test_bans_list_all_shows_every_source(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {"reason": None, "expires_ts": None, "active": True}
    api.answer(
        "GET",
        "policy",
        body={
            "banned_usernames": [{**entry, "match": "^root$", "source": "config"}],
            "banned_emails": [],
            "banned_ips": [{**entry, "match": "1.2.3.4", "source": "stored"}],
            "allowed_email_domains": [{"match": "example.org", "source": "policy_file"}],
        },
    )
    assert run(api, "bans", "list", "--all") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["KIND", "username", "ip", "allowed"]
    assert lines[1].split()[-1] == "config" and lines[3].split()[-1] == "policy_file"


def test_moderators(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer("POST", "moderators", 201, {"entry": "@h:x", "added": True})
    assert run(api, "moderators", "allow", "@h:x") == 0
    assert api.last["body"] == {"entry": "@h:x"}
    assert "allowed @h:x" in capsys.readouterr().out
    api.answer("POST", "moderators", 200, {"entry": "@h:x", "added": False})
    assert run(api, "moderators", "allow", "@h:x") == 0
    assert "allowed already" in capsys.readouterr().out

    regex = "@.*:staff/x"
    api.answer("DELETE", "moderators/%40.%2A%3Astaff%2Fx", body={"removed": regex})
    assert run(api, "moderators", "disallow", regex) == 0
    assert api.last["path"] == ADMIN + "moderators/%40.%2A%3Astaff%2Fx"

    api.answer("GET", "moderators", body={"moderators": [{"entry": "@h:x", "added_by": "@a:x"}]})
    assert run(api, "moderators", "list") == 0
    assert "@h:x" in capsys.readouterr().out


def test_reload_and_audit(api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer("POST", "reload", body={"status": "reloaded", "message": "/p.yaml loaded"})
    assert run(api, "reload") == 0
    assert "reloaded: /p.yaml loaded" in capsys.readouterr().out
    entry = {"ts": 0, "actor": "@m:x", "action": "token.create", "target": "T", "detail": ""}
    api.answer("GET", "audit", body={"entries": [entry]})
    assert run(api, "audit", "--limit", "5", "--from", "10") == 0
    assert api.last["query"] == "limit=5&from=10"
    assert "token.create" in capsys.readouterr().out


# --- exit codes ---------------------------------------------------------------------------


def test_a_refusal_exits_1_with_errcode_and_error_and_never_the_token(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer("GET", "tokens", 403, {"errcode": "M_FORBIDDEN", "error": "Not a moderator"})
    assert run(api, "tokens", "list") == 1
    captured = capsys.readouterr()
    assert "M_FORBIDDEN: Not a moderator (HTTP 403)" in captured.err
    assert ACCESS_TOKEN not in captured.out + captured.err


def test_a_policy_refused_on_reload_exits_1(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    error = "/p.yaml: banned_ips: entry 'x': not an IP address"
    api.answer("POST", "reload", 400, {"errcode": "EMAIL_GATE_POLICY_INVALID", "error": error})
    assert run(api, "reload") == 1
    assert f"EMAIL_GATE_POLICY_INVALID: {error}" in capsys.readouterr().err


def test_an_unknown_path_hints_at_the_module(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(api, "requests", "approve", "r1") == 1
    assert "is synapse_email_gate loaded there" in capsys.readouterr().err


def test_an_answer_that_is_not_json_exits_1(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.answer("GET", "tokens", 502, b"<html>Bad Gateway</html>")
    assert run(api, "tokens", "list") == 1
    assert "HTTP 502" in capsys.readouterr().err


def test_no_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--server", url, "--token", ACCESS_TOKEN, "tokens", "list"]) == 3
    err = capsys.readouterr().err
    assert "cannot connect" in err and ACCESS_TOKEN not in err


def test_unknown_host_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--server", "http://no-such-host.invalid", "--token", "t", "reload"]) == 3
    assert "cannot connect" in capsys.readouterr().err


# --- check-config -------------------------------------------------------------------------


def homeserver(tmp_path: Path, config: Any, **top: Any) -> Path:
    data = {
        "enable_registration": True,
        "registration_requires_token": True,
        "modules": [
            {"module": "other.Module"},
            {"module": "synapse_email_gate.EmailGate", "config": config},
        ],
        **top,
    }
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check(path: Path, *args: str) -> int:
    return main(["check-config", str(path), *args])


def test_check_config_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("banned_usernames: ['^spam']\nbanned_ips: ['10.0.0.0/8']\n")
    config = {
        "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none"},
        "banned_emails": ["*@example.net"],
        "policy_file": str(policy),
    }
    assert check(homeserver(tmp_path, config)) == 0
    out = capsys.readouterr().out
    assert "config is valid" in out and f"ok: {policy}: policy_file" in out
    assert "warning" not in out


def test_check_config_validates_policy_rooms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = homeserver(tmp_path, {"policy_rooms": ["#bans:example.org", "!abc:example.org"]})
    assert check(good) == 0
    assert "policy_rooms: 2 room(s), well formed" in capsys.readouterr().out
    bad = homeserver(tmp_path, {"policy_rooms": ["#bans:example.org", "bans"]})
    assert check(bad) == 1
    assert f"{bad}: policy_rooms: item 1: expected a room alias" in capsys.readouterr().out


def test_check_config_prints_every_problem_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "smtp": {"port": 70000, "tls": "sometimes", "hots": "x"},
        "banned_usernames": ["ok", "(a)\\1", 5],
        "banned_ips": ["not-an-ip", "10.0.0.1", "300.1.1.1"],
        "rate_limits": {"per_ip": {"burst": 0}},
        "token_lifetime": "soon",
        "colour": "blue",
    }
    path = homeserver(tmp_path, config)
    assert check(path) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [ln.split(": ", 2)[1] for ln in lines if ln.startswith(f"{path}: ")]
    assert sorted(problems) == sorted(
        [
            "smtp.port",
            "smtp.tls",
            "smtp.hots",
            "banned_usernames",  # the backreference
            "banned_usernames",  # item 2
            "banned_ips",  # not-an-ip
            "banned_ips",  # 300.1.1.1
            "rate_limits.per_ip.burst",
            "token_lifetime",
            "colour",
        ]
    )
    text = "\n".join(lines)
    assert "item 2 should be a string" in text and "'300.1.1.1'" in text
    assert "did you mean 'host'?" in text
    assert lines[-1] == "10 problems found"


def test_check_config_checks_moderators_against_the_server_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"moderators": ["@mod:example.org", "@mod:other.example", ".*"]}
    path = homeserver(tmp_path, config, server_name="example.org")
    assert check(path) == 1
    out = capsys.readouterr().out
    assert f"{path}: moderators: item 1: '@mod:other.example' is not a user of this server" in out
    assert f"{path}: moderators: item 2: the regex '.*' must end in :example\\.org$" in out
    good = homeserver(
        tmp_path, {"moderators": [r"@team-.*:example\.org$"]}, server_name="example.org"
    )
    assert check(good) == 0


def test_check_config_does_not_report_consequences_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"smtp": {"username": "u", "password_file": str(tmp_path / "missing"), "tls": "tls"}}
    assert check(homeserver(tmp_path, config)) == 1
    out = capsys.readouterr().out
    assert "smtp.password_file: cannot read" in out
    assert "smtp.username" not in out  # "needs password or password_file" follows from it


def test_check_config_names_a_broken_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("banned_emails: ['foo', 'bar']\nbanned_ips: ['x']\nextra: 1\n")
    assert check(homeserver(tmp_path, {"policy_file": str(policy)})) == 1
    out = capsys.readouterr().out
    assert f"{policy}: banned_emails: entry 'foo'" in out
    assert f"{policy}: banned_emails: entry 'bar'" in out
    assert f"{policy}: banned_ips: entry 'x'" in out
    assert f"{policy}: extra: unknown key" in out


def test_check_config_policy_file_missing_or_not_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert check(homeserver(tmp_path, {"policy_file": str(missing)})) == 1
    assert f"{missing}: cannot read" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text("banned_ips: [unclosed\n")
    assert main(["check-config", "--policy-file", str(broken)]) == 1
    assert f"{broken}: not valid YAML" in capsys.readouterr().out


def test_check_config_without_the_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: example.org\nmodules: [{module: other.Module}]\n")
    assert check(path) == 1
    assert "no synapse_email_gate.EmailGate module in modules:" in capsys.readouterr().out


def test_check_config_warns_when_registration_needs_no_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(homeserver(tmp_path, {}, registration_requires_token=False)) == 0
    assert "warning" in capsys.readouterr().out


def test_check_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(homeserver(tmp_path, {"smtp": {"port": 0}}), "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["problems"] == [
        {
            "file": str(tmp_path / "homeserver.yaml"),
            "key": "smtp.port",
            "problem": "must be at least 1, got 0",
        }
    ]


def test_check_config_unreadable_or_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path / "missing.yaml") == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["check-config"]) == 2
    not_yaml = tmp_path / "bad.yaml"
    not_yaml.write_text("modules: [\n")
    assert check(not_yaml) == 1
    assert "not valid YAML" in capsys.readouterr().out


def test_check_config_parses_without_the_module_or_the_reactor(tmp_path: Path) -> None:
    """check-config runs where Synapse is installed but not running: parsing must not
    import the module, Synapse's module API or Twisted's reactor (a fresh interpreter)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("banned_ips: ['10.0.0.0/8', 'x']\n")
    path = homeserver(tmp_path, {"smtp": {"port": 0}, "policy_file": str(policy)})
    probe = (
        "import json, sys\n"
        "from synapse_email_gate.cli import main\n"
        f"status = main(['check-config', {str(path)!r}])\n"
        "watched = ['twisted.internet.reactor', 'synapse.module_api',"
        " 'synapse_email_gate.module']\n"
        "loaded = [m for m in watched if m in sys.modules]\n"
        "print(json.dumps({'status': status, 'loaded': loaded}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"status": 1, "loaded": []}
    assert f"{path}: smtp.port: must be at least 1, got 0" in done.stdout
    assert f"{policy}: banned_ips: entry 'x'" in done.stdout
