"""The `synapse-email-gate` command, run as a subprocess against a real Synapse (SQLite):
token lifecycle, delete-all confirmation, bans, moderators, reload, audit, requests
(approval mode: approve and deny), and the exit codes scripts rely on (1 refused,
2 usage, 3 cannot connect).

Each start of the command imports the package, and with it Synapse: independent
commands run side by side (`together`) to keep the module fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.ports import free_port
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    confirm_address,
    register,
    registered,
    token_from,
    token_valid,
)

SYNAPSE_DATABASES = ["sqlite"]

_SCRIPT = Path(sys.executable).parent / "synapse-email-gate"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "synapse_email_gate.cli"]


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-policy") / "policy.yaml"
    path.write_text("banned_usernames: ['^fromfile$']\n")
    return path


@pytest.fixture(scope="module")
def gate_config(policy_file: Path) -> dict[str, Any]:
    return {
        "policy_file": str(policy_file),
        "approval": "required",
        "approval_reason_min_length": 10,
        "approval_notify_emails": [MODERATOR_MAIL],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


MODERATOR_MAIL = "moderators@example.org"
REASON = "I run the chess club's rooms."


def ask(synapse: SynapseServer, username: str, email: str) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": email, "reason": REASON},
    )


def pending_request(synapse: SynapseServer, mailbox: SmtpCatcher, username: str) -> None:
    """A request with a confirmed address, waiting for a moderator."""
    email = f"{username}@example.org"
    assert ask(synapse, username, email).status == 202
    assert confirm_address(synapse, mailbox.wait_for(lambda m: m.to == email)).status == 200
    mailbox.wait_for(lambda m: m.to == MODERATOR_MAIL and username in m.text)


Result = subprocess.CompletedProcess[str]


def _env(server: SynapseServer | str, token: str | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_GATE_")}
    environ["EMAIL_GATE_SERVER"] = server if isinstance(server, str) else server.base_url
    if token is not None:
        environ["EMAIL_GATE_TOKEN"] = token
    return environ


def cli(server: SynapseServer | str, token: str | None, *args: str) -> Result:
    """Run the command with the server and token in the environment."""
    return together((server, token, args))[0]


def together(*runs: tuple[SynapseServer | str, str | None, tuple[str, ...]]) -> list[Result]:
    """Run several independent commands at once (each start pays for importing Synapse)."""
    procs = [
        (
            args,
            subprocess.Popen(
                [*CLI, *args],
                env=_env(server, token),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for server, token, args in runs
    ]
    results = []
    for args, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess([*CLI, *args], proc.returncode, stdout, stderr))
    return results


def ok(result: Result) -> str:
    assert result.returncode == 0, (result.args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def as_json(result: Result) -> Any:
    return json.loads(ok(result))


def test_token_lifecycle_and_audit(synapse: SynapseServer, admin_token: str) -> None:
    created = ok(cli(synapse, admin_token, "tokens", "create", "--token", "cli-lifecycle-1"))
    assert "cli-lifecycle-1" in created and "in 7 days" in created

    listing, audit = together(
        (synapse, admin_token, ("tokens", "list")),
        (synapse, admin_token, ("audit", "--limit", "5")),
    )
    line = next(ln for ln in ok(listing).splitlines() if ln.startswith("cli-lifecycle-1 "))
    assert line.split()[1:4] == ["invite", "active", "1"]  # kind, state, 1 use left
    assert "in 7 days" in line
    assert any(
        "@ops:test.local" in ln and "token.create" in ln and "cli-lifecycle-1" in ln
        for ln in ok(audit).splitlines()
    )

    assert registered(register(synapse, "clilife", "cli-lifecycle-1"))
    shown, valid = together(
        (synapse, admin_token, ("tokens", "show", "cli-lifecycle-1", "--json")),
        (synapse, admin_token, ("--json", "tokens", "list", "--valid")),
    )
    token = as_json(shown)
    assert token["completed"] == 1 and token["uses_left"] == 0 and token["valid"] is False
    assert "cli-lifecycle-1" not in {t["token"] for t in as_json(valid)["tokens"]}

    assert "deleted cli-lifecycle-1" in ok(
        cli(synapse, admin_token, "tokens", "delete", "cli-lifecycle-1")
    )
    gone = cli(synapse, admin_token, "tokens", "show", "cli-lifecycle-1")
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_create_several_unlimited_tokens_with_a_token_file(
    synapse: SynapseServer, admin_token: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "access_token"
    token_file.write_text(admin_token + "\n")
    create = ("--token-file", str(token_file), "tokens", "create", "--unlimited")
    made = cli(synapse, None, *create, "--expiry", "never", "--length", "12", "--count", "3", "-q")
    tokens = ok(made).split()
    assert len(tokens) == 3 and all(len(t) == 12 for t in tokens)
    shown = as_json(cli(synapse, admin_token, "tokens", "show", *tokens, "--json"))
    assert [t["uses_left"] for t in shown] == [None, None, None]
    assert {t["expires"] for t in shown} == {"never"}


def test_delete_all_refuses_without_yes(synapse: SynapseServer, admin_token: str) -> None:
    ok(cli(synapse, admin_token, "tokens", "create", "--token", "cli-keep-token-1"))
    refused = cli(synapse, admin_token, "tokens", "delete-all")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert token_exists(synapse, "cli-keep-token-1")

    assert "deleted" in ok(cli(synapse, admin_token, "tokens", "delete-all", "--yes"))
    assert not token_exists(synapse, "cli-keep-token-1")


def token_exists(synapse: SynapseServer, token: str) -> bool:
    """Whether the token still works (Synapse's validity check)."""
    return token_valid(synapse.base_url, token)


def test_tokens_show_names_the_accounts_and_accounts_show_the_invite_tree(
    synapse: SynapseServer, admin_token: str, mailbox: SmtpCatcher
) -> None:
    ok(cli(synapse, admin_token, "tokens", "create", "--token", "cli-invite-tree-1", "--uses", "2"))
    assert registered(register(synapse, "clitree", "cli-invite-tree-1"))
    shown, account = together(
        (synapse, admin_token, ("tokens", "show", "cli-invite-tree-1")),
        (synapse, admin_token, ("accounts", "show", "@clitree:test.local")),
    )
    text = ok(shown)
    assert "created by:" in text and "@ops:test.local" in text
    assert "state:" in text and "active" in text
    assert any("@clitree:test.local" in ln and "client" in ln for ln in text.splitlines())
    tree = ok(account)
    assert "cli-invite-tree-1" in tree and "token made by: @ops:test.local" in tree

    # A ban added from the shell says how many open requests it revoked.
    assert ask(synapse, "clirevoked", "clirevoked@example.org").status == 202
    mailbox.wait_for(lambda m: m.to == "clirevoked@example.org")
    added = ok(cli(synapse, admin_token, "bans", "add", "username", "^clirevoked$"))
    assert "revoked 1 open request(s)" in added


def test_bans_add_list_remove(synapse: SynapseServer, admin_token: str) -> None:
    add = ("bans", "add", "username", "^clispam", "--reason", "bot wave", "--expires", "30d")
    added, bad = together(
        (synapse, admin_token, (*add, "--json")),
        (synapse, admin_token, ("bans", "add", "ip", "not-an-ip")),
    )
    ban = as_json(added)
    assert bad.returncode == 1 and "M_INVALID_PARAM" in bad.stderr
    assert ask(synapse, "clispam1", "clispam1@example.org").status == 400
    listing, in_force = together(
        (synapse, admin_token, ("bans", "list")),
        (synapse, admin_token, ("bans", "list", "--all")),
    )
    assert any(
        ban["id"] in ln and "^clispam" in ln and "bot wave" in ln for ln in ok(listing).splitlines()
    )
    assert any("^clispam" in ln and "stored" in ln for ln in ok(in_force).splitlines())
    assert f"removed ban {ban['id']}" in ok(cli(synapse, admin_token, "bans", "remove", ban["id"]))
    assert ask(synapse, "clispam2", "clispam2@example.org").status == 202

    listing_after, again, in_force = together(
        (synapse, admin_token, ("bans", "list")),
        (synapse, admin_token, ("bans", "remove", ban["id"])),
        (synapse, admin_token, ("bans", "list", "--all")),
    )
    assert ban["id"] not in ok(listing_after)
    assert "^clispam" not in ok(in_force)
    assert any("^fromfile$" in ln and "policy_file" in ln for ln in in_force.stdout.splitlines())
    assert again.returncode == 1 and "M_NOT_FOUND" in again.stderr


def test_moderators_allow_list_disallow(synapse: SynapseServer, admin_token: str) -> None:
    helper = synapse.register_user("clihelper", "helper-password-1")
    entry = "@clihelper:test.local"
    assert f"allowed {entry}" in ok(cli(synapse, admin_token, "moderators", "allow", entry))
    listing, as_helper = together(
        (synapse, admin_token, ("moderators", "list")),
        (synapse, helper, ("tokens", "list")),
    )
    assert entry in ok(listing)
    ok(as_helper)

    assert f"disallowed {entry}" in ok(cli(synapse, admin_token, "moderators", "disallow", entry))
    forbidden = cli(synapse, helper, "tokens", "list")
    assert forbidden.returncode == 1 and "M_FORBIDDEN" in forbidden.stderr


def test_moderators_with_a_slash_are_disallowed_and_only_admins_change_them(
    synapse: SynapseServer, admin_token: str
) -> None:
    helper = synapse.register_user("cli/helper", "helper-password-1")
    silly = cli(synapse, admin_token, "moderators", "allow", ".*")
    assert silly.returncode == 1 and r"must end in :test\.local$" in silly.stderr

    for entry in ("@cli/helper:test.local", r"@cli/.*:test\.local$"):
        assert f"allowed {entry}" in ok(cli(synapse, admin_token, "moderators", "allow", entry))
        listing, widen, short, forever, by_mod = together(
            (synapse, helper, ("tokens", "list")),
            (synapse, helper, ("moderators", "allow", "@cli/friend:test.local")),
            (synapse, helper, ("tokens", "create", "--token", "short")),
            (synapse, helper, ("tokens", "create", "--unlimited")),
            (synapse, helper, ("moderators", "disallow", entry)),
        )
        ok(listing)
        for refused in (widen, by_mod):
            assert refused.returncode == 1, refused
            assert (
                "EMAIL_GATE_ADMIN_ONLY: only server admins may change who moderates (HTTP 403)"
                in refused.stderr
            )
        assert short.returncode == 1 and "12 to 64 characters" in short.stderr
        assert forever.returncode == 1 and "EMAIL_GATE_ADMIN_ONLY" in forever.stderr

        done = cli(synapse, admin_token, "moderators", "disallow", entry)
        assert f"disallowed {entry}" in ok(done)
        forbidden = cli(synapse, helper, "tokens", "list")
        assert forbidden.returncode == 1 and "M_FORBIDDEN" in forbidden.stderr


def test_reload_reports_a_broken_policy_file(
    synapse: SynapseServer, admin_token: str, policy_file: Path
) -> None:
    good = policy_file.read_text()
    try:
        policy_file.write_text("banned_ips: ['not-an-ip']\n")
        broken = cli(synapse, admin_token, "reload")
        assert broken.returncode == 1
        assert "EMAIL_GATE_POLICY_INVALID" in broken.stderr and "banned_ips" in broken.stderr
    finally:
        policy_file.write_text(good)
    assert "loaded" in ok(cli(synapse, admin_token, "reload"))


def test_requests_list_approve_deny_and_show(
    synapse: SynapseServer, admin_token: str, mailbox: SmtpCatcher
) -> None:
    pending_request(synapse, mailbox, "cliyes")
    pending_request(synapse, mailbox, "clino")
    page = as_json(
        cli(
            synapse,
            admin_token,
            "requests",
            "list",
            "--status",
            "pending",
            "--search",
            "cli",
            "--json",
        )
    )
    ids = {r["localpart"]: r["id"] for r in page["requests"]}
    assert list(ids) == ["clino", "cliyes"]  # newest first

    approved, denied, bad = together(
        (synapse, admin_token, ("requests", "approve", ids["cliyes"])),
        (synapse, admin_token, ("requests", "deny", ids["clino"], "--message", "We are full.")),
        (synapse, admin_token, ("requests", "list", "--status", "bogus")),
    )
    assert f"approved request {ids['cliyes']} (status: issued)" in ok(approved)
    assert f"denied request {ids['clino']} (status: denied)" in ok(denied)
    assert bad.returncode == 1 and "status must be one of" in bad.stderr
    token = token_from(
        mailbox.wait_for(lambda m: m.to == "cliyes@example.org" and "token" in m.text.lower())
    )
    assert registered(register(synapse, "cliyes", token))
    no_mail = mailbox.wait_for(lambda m: m.to == "clino@example.org" and "We are full." in m.text)
    assert "Registration token" not in no_mail.text

    shown, again = together(
        (synapse, admin_token, ("requests", "show", ids["clino"])),
        (synapse, admin_token, ("requests", "approve", ids["clino"])),
    )
    assert "clino@example.org" in ok(shown) and "denied" in shown.stdout
    assert "We are full." in shown.stdout and "request.deny" in shown.stdout
    assert again.returncode == 1 and "EMAIL_GATE_NOT_PENDING" in again.stderr


def test_exit_codes_for_a_wrong_token_no_server_and_no_token(synapse: SynapseServer) -> None:
    secret = "syt_not_a_real_token_4711"
    wrong, unreachable, no_token = together(
        (synapse, secret, ("tokens", "list")),
        (f"http://127.0.0.1:{free_port()}", "whatever", ("tokens", "list")),
        (synapse, None, ("reload",)),
    )
    assert wrong.returncode == 1 and "M_UNKNOWN_TOKEN" in wrong.stderr
    assert secret not in wrong.stdout + wrong.stderr
    assert unreachable.returncode == 3 and "cannot connect" in unreachable.stderr
    assert no_token.returncode == 2 and "EMAIL_GATE_TOKEN" in no_token.stderr
