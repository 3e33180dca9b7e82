"""The manual purge against a real Synapse: `POST admin/purge` (a dry run first,
then the purge, with an audit entry), the CLI and the room, all for server admins
only, and all deleting what the hourly retention purge deletes, with a tighter age
when asked."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import db_execute, request_token
from tests.integration.matrix import MatrixUser
from tests.integration.test_cli import cli, ok

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@purgemod:test.local"],
        "moderation_room": "#purgeroom:test.local",
        # The hourly purge stays out of the way: every purge here is a manual one.
        "retention": {"purge_interval": "1d"},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("purgemod", "purgemod-password-1")


def purge(synapse: SynapseServer, access_token: str, **body: Any) -> http.Response:
    return http.post(
        synapse.gate_url + "admin/purge", json=body, headers=synapse.auth_headers(access_token)
    )


def requests_of(synapse: SynapseServer, localpart: str) -> int:
    rows = synapse.query(
        "SELECT COUNT(*) FROM email_gate_requests WHERE localpart = ?", (localpart,)
    )
    return int(rows[0][0])


def mails_of(synapse: SynapseServer, localpart: str) -> int:
    rows = synapse.query(
        "SELECT COUNT(*) FROM email_gate_outbox o JOIN email_gate_requests r"
        " ON r.id = o.request_id WHERE r.localpart = ?",
        (localpart,),
    )
    return int(rows[0][0])


def age(synapse: SynapseServer, localpart: str, days: int) -> None:
    """The request was made `days` ago and its token has expired."""
    changed = db_execute(
        synapse,
        "UPDATE email_gate_requests SET created_ts = created_ts - ?, expires_ts = 0"
        " WHERE localpart = ?",
        (days * DAY_MS, localpart),
    )
    assert changed == 1


def test_a_dry_run_counts_then_the_purge_deletes_the_same_and_is_audited(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str, mod_token: str
) -> None:
    request_token(synapse, mailbox, "purgeold", "purgeold@example.org")
    request_token(synapse, mailbox, "purgenew", "purgenew@example.org")
    age(synapse, "purgeold", 3)
    assert mails_of(synapse, "purgeold") == 1

    # Under `retention` (7 days for unfinished requests) nothing of them goes yet.
    counted = purge(synapse, admin_token)
    assert counted.status == 200, counted
    assert counted.json()["dry_run"] is True and counted.json()["counts"]["requests"] == 0

    tighter = purge(synapse, admin_token, older_than="2d")
    assert tighter.status == 200, tighter
    assert tighter.json()["dry_run"] is True and tighter.json()["older_than_ms"] == 2 * DAY_MS
    counts = tighter.json()["counts"]
    assert counts["requests"] == 1 and counts["mails"] == 1, counts
    assert requests_of(synapse, "purgeold") == 1  # a dry run deletes nothing
    # Its rolled-back transaction is no failure to report.
    assert "_DryRun" not in synapse.log_text() and "purge_dry_run" not in synapse.log_text()

    done = purge(synapse, admin_token, older_than="2d", dry_run=False)
    assert done.status == 200, done
    assert done.json()["dry_run"] is False
    assert done.json()["counts"]["requests"] == 1 and done.json()["counts"]["mails"] == 1
    assert requests_of(synapse, "purgeold") == 0 and mails_of(synapse, "purgeold") == 0
    assert requests_of(synapse, "purgenew") == 1

    audit = http.get(synapse.gate_url + "admin/audit", headers=synapse.auth_headers(admin_token))
    (entry,) = [e for e in audit.json()["entries"] if e["action"] == "purge"]
    assert entry["actor"] == "@ops:test.local", entry
    assert "older_than=2d" in entry["detail"] and "requests=1" in entry["detail"], entry


def test_only_server_admins_purge_and_bad_input_is_named(
    synapse: SynapseServer, admin_token: str, mod_token: str
) -> None:
    refused = purge(synapse, mod_token)
    assert refused.status == 403 and refused.json()["errcode"] == "EMAIL_GATE_ADMIN_ONLY", refused
    cases = [
        ({"older_than": "30m"}, "at least 1h"),
        ({"older_than": "soon"}, "a duration like 30d"),
        ({"dry_run": "no"}, "dry_run must be true or false"),
        ({"everything": True}, "unknown field(s): everything"),
    ]
    for body, message in cases:
        answer = purge(synapse, admin_token, **body)
        assert answer.status == 400 and message in answer.json()["error"], (body, answer)


def test_the_cli_counts_with_dry_run_and_purges_without(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str, mod_token: str
) -> None:
    request_token(synapse, mailbox, "purgecli", "purgecli@example.org")
    age(synapse, "purgecli", 3)
    counted = ok(cli(synapse, admin_token, "purge", "--dry-run", "--older-than", "2d"))
    assert "would delete (dry run):" in counted and "requests: 1" in counted, counted
    assert requests_of(synapse, "purgecli") == 1
    refused = cli(synapse, mod_token, "purge", "--dry-run")
    assert refused.returncode == 1 and "EMAIL_GATE_ADMIN_ONLY" in refused.stderr, refused
    done = ok(cli(synapse, admin_token, "purge", "--older-than", "2d"))
    assert "deleted:" in done and "requests: 1" in done, done
    assert requests_of(synapse, "purgecli") == 0


def test_the_room_purge_counts_then_asks_for_a_one_time_phrase(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    ops = MatrixUser(synapse, "purgeops", admin=True)
    moderator = MatrixUser(synapse, "purgemod2")
    room = ops.open_moderation_room("purgeroom")

    request_token(synapse, mailbox, "purgeroomold", "purgeroomold@example.org")
    age(synapse, "purgeroomold", 3)
    asked = ops.ask_bot(room, "!gate purge 2d")
    assert "tightened to 2d would delete: 1 requests, 1 mails" in asked, asked
    phrase = re.search(r"!gate purge confirm (\S+)$", asked)
    assert phrase, asked
    assert "nothing was purged" in ops.ask_bot(room, "!gate purge confirm not-it")
    assert requests_of(synapse, "purgeroomold") == 1
    # That phrase had its one try.
    assert "No confirmation is waiting" in ops.ask_bot(room, f"!gate purge confirm {phrase[1]}")

    phrase = re.search(r"!gate purge confirm (\S+)$", ops.ask_bot(room, "!gate purge 2d"))
    assert phrase
    done = ops.ask_bot(room, f"!gate purge confirm {phrase[1]}")
    assert done.startswith("Purged: 1 requests, 1 mails"), done
    assert requests_of(synapse, "purgeroomold") == 0

    # A moderator who is no server admin is refused, before anything is counted.
    allowed = http.post(
        synapse.gate_url + "admin/moderators",
        json={"entry": moderator.user_id},
        headers=synapse.auth_headers(ops.access_token),
    )
    assert allowed.status == 201, allowed
    ops.invite(room, moderator.user_id)
    moderator.join(room)
    refused = moderator.ask_bot(room, "!gate purge")
    assert refused == "Refused: only server admins may purge old records", refused
