"""The mail queue against a real Synapse (SQLite and PostgreSQL) and aiosmtpd:
retries with backoff, SMTP down and back, permanent refusals, giving up, batches
over one connection, SIGKILL with a queue, the crash between the SMTP 250 and
the commit, and requests orphaned between the answer and their processing.

Time is shortened with `mail_retry_initial: 1s` and `mail_sweep_interval: 500ms`.
Where a test needs more time to pass than that (a lease running out,
`mail_retry_for` passing), it moves the row's timestamps in the database
instead of waiting, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    db_execute,
    mails_to,
    quiet,
    request_outcome,
    token_from,
    wait_until,
)

FAST = {"per_second": 1000, "burst": 1000}


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "mail_retry_initial": "1s",
        "mail_sweep_interval": "500ms",
        "mail_retry_for": "1h",
        "email_cooldown": 0,
        "rate_limits": {"per_ip": FAST, "per_email": FAST, "global": FAST},
    }


# --- the database ------------------------------------------------------------


def outbox_rows(synapse: SynapseServer, localpart: str) -> list[dict[str, Any]]:
    rows = synapse.query(
        """
        SELECT o.id, o.status, o.attempts, o.last_error, o.next_attempt_ts, o.lease_until_ts
        FROM email_gate_outbox o JOIN email_gate_requests r ON r.id = o.request_id
        WHERE r.localpart = ?
        """,
        (localpart,),
    )
    keys = ("id", "status", "attempts", "last_error", "next_attempt_ts", "lease_until_ts")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def wait_outbox(
    synapse: SynapseServer,
    localpart: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Wait until the outbox row of ``localpart``'s request satisfies ``check``."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = outbox_rows(synapse, localpart)
        if len(rows) == 1 and check(rows[0]):
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"outbox of {localpart!r} not as expected within {timeout}s: {rows}")


def accepted(synapse: SynapseServer, username: str, email: str) -> None:
    answer = ask(synapse, username, email)
    assert answer.status == 202, answer


# --- retries -----------------------------------------------------------------


def test_a_refused_mail_is_retried_and_arrives_once_smtp_accepts(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    mailbox.refuse("451 4.3.0 Try again later")
    accepted(synapse, "retry1", "retry1@example.org")
    row = wait_outbox(synapse, "retry1", lambda r: r["attempts"] >= 2)
    assert row["status"] == "queued"
    assert "451" in row["last_error"]
    assert not mails_to(mailbox, "retry1@example.org")

    mailbox.accept()
    mail = mailbox.wait_for_rcpt("retry1@example.org", timeout=15)
    assert token_from(mail)
    row = wait_outbox(synapse, "retry1", lambda r: r["status"] == "sent")
    assert row["last_error"] is None
    assert quiet(mailbox, 1.0) == []
    assert len(mails_to(mailbox, "retry1@example.org")) == 1


def test_smtp_down_then_back_on_the_same_port_delivers(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    mailbox.stop()
    try:
        accepted(synapse, "down1", "down1@example.org")
        row = wait_outbox(synapse, "down1", lambda r: r["attempts"] >= 1 and r["last_error"])
        assert row["status"] == "queued"
        assert "connect" in row["last_error"].lower(), row["last_error"]
    finally:
        mailbox.start()
    mailbox.wait_for_rcpt("down1@example.org", timeout=15)
    wait_outbox(synapse, "down1", lambda r: r["status"] == "sent")
    assert quiet(mailbox, 1.0) == []
    assert len(mails_to(mailbox, "down1@example.org")) == 1


def test_a_permanent_refusal_fails_the_mail_at_once_without_retries(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    mailbox.refuse("550 5.1.1 <perm1@example.org>: mailbox unavailable")
    accepted(synapse, "perm1", "perm1@example.org")
    row = wait_outbox(synapse, "perm1", lambda r: r["status"] == "failed")
    assert row["attempts"] == 1
    assert "550" in row["last_error"]
    # The address echoed by the server is masked, in the row and in the log.
    assert "perm1@example.org" not in row["last_error"]
    assert "p***@example.org" in row["last_error"]
    mailbox.accept()
    time.sleep(1.5)  # three sweeps
    assert outbox_rows(synapse, "perm1")[0]["attempts"] == 1
    assert mails_to(mailbox, "perm1@example.org") == []
    log = synapse.log_text()
    assert "mail failed for good, reason=permanent" in log
    assert "perm1@example.org" not in log


def test_a_mail_not_taken_within_mail_retry_for_fails(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    mailbox.refuse("451 4.3.0 Try again later")
    accepted(synapse, "late1", "late1@example.org")
    wait_outbox(synapse, "late1", lambda r: r["attempts"] >= 1 and r["last_error"])
    # An hour passes: the row is made an hour older instead of waiting.
    hour_ms = 3_600_000
    db_execute(
        synapse,
        """
        UPDATE email_gate_outbox SET created_ts = created_ts - ?, next_attempt_ts = 0
        WHERE request_id IN (SELECT id FROM email_gate_requests WHERE localpart = ?)
        """,
        (hour_ms, "late1"),
    )
    row = wait_outbox(synapse, "late1", lambda r: r["status"] == "failed")
    assert "451" in row["last_error"]
    attempts = row["attempts"]
    mailbox.accept()
    time.sleep(1.5)
    assert outbox_rows(synapse, "late1")[0]["attempts"] == attempts
    assert mails_to(mailbox, "late1@example.org") == []
    assert "mail failed for good, reason=expired" in synapse.log_text()


def test_a_mail_whose_token_expired_in_the_queue_is_not_sent(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    mailbox.refuse("451 4.3.0 Try again later")
    accepted(synapse, "stale1", "stale1@example.org")
    wait_outbox(synapse, "stale1", lambda r: r["attempts"] >= 1 and r["last_error"])
    # The token's lifetime runs out while the mail waits (moved, not waited for).
    db_execute(
        synapse,
        "UPDATE email_gate_requests SET expires_ts = ? WHERE localpart = ?",
        (int(time.time() * 1000) - 1, "stale1"),
    )
    mailbox.accept()
    db_execute(
        synapse,
        """
        UPDATE email_gate_outbox SET next_attempt_ts = 0
        WHERE request_id IN (SELECT id FROM email_gate_requests WHERE localpart = ?)
        """,
        ("stale1",),
    )
    row = wait_outbox(synapse, "stale1", lambda r: r["status"] == "failed")
    assert "expired" in row["last_error"]
    assert mails_to(mailbox, "stale1@example.org") == []
    # The row is marked failed in the transaction that follows the decision; the log
    # line comes after that commit: wait for it rather than read the log at once.
    wait_until(
        lambda: "mail failed for good, reason=token_expired" in synapse.log_text(),
        "the log says the mail failed for good because its token expired",
    )


def test_a_long_queue_goes_out_over_few_connections(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    names = [f"batch{i}" for i in range(12)]
    mailbox.refuse("451 4.3.0 Try again later")
    for name in names:
        accepted(synapse, name, f"{name}@example.org")
    for name in names:
        wait_outbox(synapse, name, lambda r: r["attempts"] >= 2)
    mailbox.accept()
    # All of them due now (instead of at their own backoff times): one sweep takes them.
    db_execute(
        synapse,
        """
        UPDATE email_gate_outbox SET next_attempt_ts = 0 WHERE status = 'queued'
        AND request_id IN (SELECT id FROM email_gate_requests WHERE localpart LIKE ?)
        """,
        ("batch%",),
    )
    mails = [mailbox.wait_for_rcpt(f"{name}@example.org", timeout=15) for name in names]
    per_connection: dict[int, int] = {}
    for mail in mails:
        per_connection[mail.connection] = per_connection.get(mail.connection, 0) + 1
    assert len(per_connection) <= 3, per_connection
    assert max(per_connection.values()) >= 5, per_connection
    assert quiet(mailbox, 1.0) == []


# --- crashes -----------------------------------------------------------------


def test_sigkill_with_a_queue_and_an_orphan_then_restart_delivers_each_mail_once(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    """Synapse killed with mails queued (their first attempt refused) and with a
    request orphaned between its 202 and its processing; after the restart each
    mail arrives exactly once and the orphan is finished by the sweep."""
    names = ["kill1", "kill2", "kill3"]
    mailbox.refuse("451 4.3.0 Try again later")
    for name in names:
        accepted(synapse, name, f"{name}@example.org")
    for name in names:
        wait_outbox(synapse, name, lambda r: r["attempts"] >= 1 and r["last_error"])
    synapse.kill()
    orphan(synapse, "orphan1")
    mailbox.accept()
    synapse.start()
    for name in [*names, "orphan1"]:
        mailbox.wait_for_rcpt(f"{name}@example.org", timeout=15)
        wait_outbox(synapse, name, lambda r: r["status"] == "sent")
    assert "@orphan1:test.local" in mails_to(mailbox, "orphan1@example.org")[0].text
    assert quiet(mailbox, 1.5) == []
    for name in [*names, "orphan1"]:
        assert len(mails_to(mailbox, f"{name}@example.org")) == 1, name


def orphan(synapse: SynapseServer, localpart: str) -> None:
    """The state a crash right after the 202 leaves: the request recorded as
    `received`, its processing never run (written while Synapse is down)."""
    created = int(time.time() * 1000) - 60_000  # older than the orphan threshold (30 s)
    address = f"{localpart}@example.org"
    db_execute(
        synapse,
        """
        INSERT INTO email_gate_requests
            (id, created_ts, updated_ts, localpart, email, email_key, ip, lang, status)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'received')
        """,
        (f"orphan-{localpart}", created, created, localpart, address, address, "127.0.0.1", "en"),
    )


def test_a_crash_between_the_250_and_the_commit_resends_after_the_lease(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    """The documented duplicate: the server took the mail, Synapse died before
    marking it sent. Nothing is lost; the mail goes again once the lease is over."""
    killed: list[bool] = []

    def crash(_: Any) -> None:
        if not killed:
            killed.append(True)
            synapse.kill()  # before the 250 even reaches the client

    mailbox.on_mail = crash
    try:
        accepted(synapse, "crash1", "crash1@example.org")
        first = mailbox.wait_for_rcpt("crash1@example.org")
        deadline = time.monotonic() + 10
        while not killed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert killed
    finally:
        mailbox.on_mail = None
    row = outbox_rows(synapse, "crash1")[0]
    assert row["status"] == "queued"
    assert row["lease_until_ts"] > time.time() * 1000  # still leased to the dead process

    synapse.start()
    assert quiet(mailbox, 1.5) == []  # not while the lease holds
    # The lease (minutes) runs out: moved to now instead of waiting.
    db_execute(
        synapse, "UPDATE email_gate_outbox SET lease_until_ts = 0 WHERE id = ?", (row["id"],)
    )
    wait_outbox(synapse, "crash1", lambda r: r["status"] == "sent")
    copies = mails_to(mailbox, "crash1@example.org")
    assert len(copies) == 2
    assert token_from(copies[0]) == token_from(copies[1]) == token_from(first)


# --- a failing issue transaction ----------------------------------------------

FAIL_DOOMED = {
    "sqlite": [
        """
        CREATE TRIGGER gate_test_fail BEFORE INSERT ON email_gate_outbox
        WHEN (SELECT localpart FROM email_gate_requests WHERE id = NEW.request_id) = 'doomed'
        BEGIN SELECT RAISE(ABORT, 'injected failure'); END
        """
    ],
    "postgres": [
        """
        CREATE FUNCTION gate_test_fail() RETURNS trigger AS $$ BEGIN
            IF (SELECT localpart FROM email_gate_requests WHERE id = NEW.request_id) = 'doomed'
            THEN RAISE EXCEPTION 'injected failure'; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql
        """,
        """
        CREATE TRIGGER gate_test_fail BEFORE INSERT ON email_gate_outbox
        FOR EACH ROW EXECUTE FUNCTION gate_test_fail()
        """,
    ],
}


def test_a_failed_issue_transaction_leaves_the_request_to_the_sweep(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    """The database refuses the issue batch: the answer was 202 already, the request
    stays `received` (nothing half-written), the failure is logged, and the sweep
    issues and mails it once the database works again."""
    engine = "sqlite" if synapse.postgres is None else "postgres"
    accepted(synapse, "prelude", "prelude@example.org")  # the tables exist once answered
    mailbox.wait_for_rcpt("prelude@example.org")
    for statement in FAIL_DOOMED[engine]:
        db_execute(synapse, statement)
    try:
        accepted(synapse, "doomed", "doomed@example.org")
        deadline = time.monotonic() + 10
        while "not assessed, retried by the sweep" not in synapse.log_text():
            assert time.monotonic() < deadline, synapse.tail()
            time.sleep(0.1)
        status = synapse.query(
            "SELECT status FROM email_gate_requests WHERE localpart = ?", ("doomed",)
        )
        assert status == [("received",)]
        assert outbox_rows(synapse, "doomed") == []
    finally:
        on_table = "" if engine == "sqlite" else " ON email_gate_outbox"
        db_execute(synapse, f"DROP TRIGGER gate_test_fail{on_table}")
    # Older than the orphan threshold (30 s): the next sweep (every 500 ms) takes it.
    db_execute(
        synapse,
        "UPDATE email_gate_requests SET created_ts = created_ts - 60000 WHERE localpart = ?",
        ("doomed",),
    )
    mail = mailbox.wait_for_rcpt("doomed@example.org", timeout=15)
    assert "@doomed:test.local" in mail.text
    assert request_outcome(synapse, "doomed")[0] == "issued"
