"""Privacy against a real Synapse: keyed hashes instead of addresses, and retention."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, quiet, request_token
from tests.integration.test_mail_queue import db_execute

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "privacy": {"hash_emails": True, "hash_secret": "a-long-secret-for-the-tests"},
        "retention": {"unfinished": "1d", "finished": "2d", "purge_interval": "1s"},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def stored_email(synapse: SynapseServer, localpart: str) -> str:
    rows = synapse.query("SELECT email FROM email_gate_requests WHERE localpart = ?", (localpart,))
    assert len(rows) == 1, rows
    return str(rows[0][0])


def wait_for(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_only_a_keyed_hash_of_the_address_is_kept_once_mailed(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "hashed", "Hashed.Person@example.org")
    wait_for(lambda: stored_email(synapse, "hashed").startswith("hmac:"), "the address to go")
    assert "example.org" not in stored_email(synapse, "hashed")


def test_rules_keep_working_on_hashed_addresses(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "hashcool", "hashcool@example.org")
    assert ask(synapse, "hashcool2", "HashCool+x@example.org").status == 202
    assert quiet(mailbox, to="HashCool+x@example.org") == []


def test_old_requests_are_deleted_after_retention(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "oldone", "oldone@example.org")
    request_token(synapse, mailbox, "newone", "newone@example.org")
    db_execute(
        synapse,
        "UPDATE email_gate_requests SET created_ts = created_ts - ?, expires_ts = 0"
        " WHERE localpart = ?",
        (3 * DAY_MS, "oldone"),
    )
    wait_for(
        lambda: (
            not synapse.query("SELECT 1 FROM email_gate_requests WHERE localpart = ?", ("oldone",))
        ),
        "the purge",
    )
    assert synapse.query("SELECT 1 FROM email_gate_requests WHERE localpart = ?", ("newone",))
