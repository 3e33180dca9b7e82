"""Importing the FastAPI page's files, on a real Synapse (SQLite and PostgreSQL):
`POST admin/import/registrations` makes an imported address keep its history (an
address that made an account stays used, one that asked recently is in cooldown),
a dry run changes nothing, bad rows are named, only server admins may import; and
`synapse-email-gate import` end to end: lists written (never over an existing file
unless asked) and put in force by a reload, records sent, problems named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    ask_from,
    expect_no_mail,
    mails_to,
    reload_policy,
    request_outcome,
)

_SCRIPT = Path(sys.executable).parent / "synapse-email-gate"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "synapse_email_gate.cli"]
MODERATOR = "importmod"


@pytest.fixture(scope="module")
def import_dir(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    directory = tmp_path_factory.mktemp(f"import-{synapse_db}")
    (directory / "converted").mkdir()
    # Where the converted policy will be: it exists (empty) when Synapse starts.
    (directory / "converted" / "email_gate_policy.yaml").write_text("{}\n")
    return directory


@pytest.fixture(scope="module")
def gate_config(import_dir: Path) -> dict[str, Any]:
    return {
        "policy_file": str(import_dir / "converted" / "email_gate_policy.yaml"),
        "email_cooldown": "1h",
        "moderators": [f"@{MODERATOR}:test.local"],
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def import_records(
    synapse: SynapseServer, access_token: str, records: list[Any], dry_run: bool = False
) -> http.Response:
    return http.post(
        synapse.gate_url + "admin/import/registrations",
        json={"records": records, "dry_run": dry_run},
        headers=synapse.auth_headers(access_token),
    )


def mailed(synapse: SynapseServer, mailbox: SmtpCatcher, localpart: str, address: str) -> None:
    assert ask(synapse, localpart, address).status == 202
    assert request_outcome(synapse, localpart) == ("issued", None)
    mailbox.wait_for(lambda m: m.to == address)


def test_imported_addresses_keep_their_history(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    synapse.register_user("oldalice", "old alice's password")
    long_ago = now_ms() - 30 * 86_400_000
    answer = import_records(
        synapse,
        admin_token,
        [
            # Made an account on the old page: the address stays used.
            {
                "row": 1,
                "username": "OldAlice",
                "email": "oldalice@example.org",
                "time_ms": long_ago,
            },
            # Asked ten minutes ago and never registered: in cooldown for 50 more minutes.
            {
                "row": 2,
                "username": "oldbob",
                "email": "Old.Bob+x@example.org",
                "time_ms": now_ms() - 600_000,
            },
            # Asked long ago and never registered: free to ask again.
            {
                "row": 3,
                "username": "oldcarol",
                "email": "oldcarol@example.org",
                "time_ms": long_ago,
            },
            {"row": 4, "username": "bad name!", "email": "x@example.org", "time_ms": long_ago},
            {"row": 5, "username": "fine", "email": "not an address", "time_ms": long_ago},
            {"row": 7, "username": "fine", "email": "fine@example.org", "time_ms": 5},
        ],
    )
    assert answer.status == 200, answer
    body = answer.json()
    assert body["imported"] == 3
    assert body["addresses"] == 3
    assert body["with_accounts"] == 1
    assert body["dry_run"] is False
    rejected = {r["row"]: r["error"] for r in body["rejected"]}
    assert sorted(rejected) == [4, 5, 7], rejected
    assert "username" in rejected[4]
    assert "'not an address'" in rejected[5]
    assert "time_ms 5 is not between the year 2000 and now" in rejected[7]

    # One account per address: no token for a new name from the old address.
    assert ask(synapse, "alicenew", "oldalice@example.org").status == 202
    expect_no_mail(synapse, mailbox, "alicenew", "oldalice@example.org", reason="already_used")
    # Cooldown continuity, for every spelling of the address.
    assert ask(synapse, "bobnew", "old.bob@example.org").status == 202
    expect_no_mail(synapse, mailbox, "bobnew", "old.bob@example.org", reason="cooldown")
    mailed(synapse, mailbox, "carolnew", "oldcarol@example.org")

    audit = http.get(synapse.gate_url + "admin/audit", headers=synapse.auth_headers(admin_token))
    actions = [e["action"] for e in audit.json()["entries"]]
    assert "import.registrations" in actions


def test_importing_again_never_loosens_the_records(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    recent = now_ms() - 60_000
    record = {"username": "againdan", "email": "againdan@example.org", "time_ms": recent}
    assert import_records(synapse, admin_token, [record]).status == 200
    # An older time for the same address does not end its cooldown.
    older = {**record, "time_ms": now_ms() - 30 * 86_400_000}
    body = import_records(synapse, admin_token, [older]).json()
    assert body["new_addresses"] == 0 and body["addresses"] == 1
    assert ask(synapse, "againdan2", "againdan@example.org").status == 202
    expect_no_mail(synapse, mailbox, "againdan2", "againdan@example.org", reason="cooldown")


def test_a_dry_run_changes_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    synapse.register_user("dryerin", "dry erin's password")
    record = {"username": "dryerin", "email": "dryerin@example.org", "time_ms": now_ms()}
    answer = import_records(synapse, admin_token, [record], dry_run=True)
    assert answer.status == 200, answer
    body = answer.json()
    assert body == {
        "dry_run": True,
        "imported": 1,
        "rejected": [],
        "addresses": 1,
        "new_addresses": 1,
        "with_accounts": 1,
    }
    mailed(synapse, mailbox, "dryerin2", "dryerin@example.org")


def test_only_server_admins_may_import(synapse: SynapseServer, admin_token: str) -> None:
    moderator = synapse.register_user(MODERATOR, "moderator's password")
    record = {"username": "modimport", "email": "modimport@example.org", "time_ms": now_ms()}
    answer = import_records(synapse, moderator, [record])
    assert answer.status == 403, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_ADMIN_ONLY"
    assert http.post(synapse.gate_url + "admin/import/registrations", json={}).status == 401


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "records"),
        ({"records": []}, "records"),
        ({"records": "x"}, "records"),
        ({"records": [{"username": "a"}] * 501}, "500"),
        ({"records": [{}], "dry_run": "yes"}, "dry_run"),
        # A record not shaped as described refuses the call, naming it.
        ({"records": ["x"]}, "records[0] must be an object"),
        (
            {"records": [{"username": "a", "email": "a@example.org", "time_ms": "yesterday"}]},
            "records[0].time_ms must be an integer",
        ),
        (
            {"records": [{"username": "a", "email": "a@example.org", "time_ms": 1, "row": 0}]},
            "records[0].row must be a positive integer",
        ),
        ({"records": [{"email": "a@example.org", "time_ms": 1}]}, "records[0].username"),
    ],
)
def test_a_bad_body_is_refused_naming_the_problem(
    synapse: SynapseServer, admin_token: str, body: dict[str, Any], named: str
) -> None:
    answer = http.post(
        synapse.gate_url + "admin/import/registrations",
        json=body,
        headers=synapse.auth_headers(admin_token),
    )
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "M_INVALID_PARAM"
    assert named in answer.json()["error"]


def run_cli(
    synapse: SynapseServer, access_token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_GATE_")}
    environ["EMAIL_GATE_SERVER"] = synapse.base_url
    environ["EMAIL_GATE_TOKEN"] = access_token
    return subprocess.run(
        [*CLI, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_cli_converts_the_old_files_and_imports_the_log(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str, import_dir: Path
) -> None:
    old = import_dir / "old"
    old.mkdir()
    (old / "banned_usernames.txt").write_text("# old bans\n^cliban\n(x)\\1\nfoo(?=bar)\n")
    (old / "banned_emails.txt").write_text("*@cli-banned.example\nspam*@example.net\n")
    (old / "banned_ips.txt").write_text("203.0.113.90\nnot-an-ip\n")
    synapse.register_user("cliold", "cli old password")
    (old / "registrations.json").write_text(
        json.dumps(
            [
                {
                    "username": "cliold",
                    "email": "cliold@example.org",
                    "time": "2024-05-01T12:00:00Z",
                },
                {"username": "clinew", "email": "clinew@example.org"},
            ]
        )
    )
    converted = import_dir / "converted"
    policy = converted / "email_gate_policy.yaml"

    dry = run_cli(synapse, admin_token, "import", str(old), "--out", str(converted), "--dry-run")
    assert dry.returncode == 1, (dry.stdout, dry.stderr)  # entries and a row not imported
    assert f"{old / 'banned_usernames.txt'}: line 3: " in dry.stdout
    assert f"{old / 'banned_usernames.txt'}: line 4: " in dry.stdout
    assert f"{old / 'banned_ips.txt'}: line 2: " in dry.stdout
    assert f"{old / 'registrations.json'}: row 2: no time field" in dry.stdout
    assert "would import 1 record(s): 1 address(es), 1 new, 1 with an account here" in dry.stdout
    assert not (converted / "banned_usernames.txt").exists()
    assert policy.read_text() == "{}\n"

    # The policy file exists: it is not replaced without --overwrite.
    refused = run_cli(synapse, admin_token, "import", str(old), "--out", str(converted))
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"would replace {policy}" in refused.stderr
    assert policy.read_text() == "{}\n"

    done = run_cli(
        synapse, admin_token, "--json", "import", str(old), "--out", str(converted), "--overwrite"
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert report["records"]["imported"] == 1
    assert report["policy_file"] == str(policy)
    written = (converted / "banned_usernames.txt").read_text()
    assert "^cliban" in written and "# not imported: line 3: " in written

    assert reload_policy(synapse, admin_token).status == 200
    assert ask(synapse, "cliban1", "not-an-address").json()["errcode"] == (
        "EMAIL_GATE_USERNAME_BANNED"
    )
    assert ask_from(synapse, "cliip", "cliip@example.org", "203.0.113.90").status == 403
    assert ask(synapse, "climail", "spammer@example.net").status == 202
    expect_no_mail(synapse, mailbox, "climail", "spammer@example.net", reason="email_banned")
    assert ask(synapse, "climail2", "ok@example.net").status == 202
    assert request_outcome(synapse, "climail2") == ("issued", None)
    # The imported record: the old address made an account.
    assert ask(synapse, "cliold2", "cliold@example.org").status == 202
    expect_no_mail(synapse, mailbox, "cliold2", "cliold@example.org", reason="already_used")
    assert mails_to(mailbox, "cliold@example.org") == []
