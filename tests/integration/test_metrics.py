"""Prometheus metrics on Synapse's own metrics listener: a run with known outcomes,
then the scrape must show exactly those counts. And the log says each decision
with its reason code, without a full address. Metrics do not depend on the
database: SQLite only."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_email_gate import metrics
from tests.conftest import module_config_for
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    SERVER,
    ask,
    register,
    registered,
    reload_policy,
    request_outcome,
    scrape,
    token_from,
    value,
)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metrics-policy") / "policy.yaml"
    path.write_text("banned_usernames: ['^root$']\n")
    return path


@pytest.fixture(scope="module")
def metered(smtp: SmtpCatcher, policy_file: Path) -> Iterator[SynapseServer]:
    config = module_config_for(
        smtp,
        {
            "policy_file": str(policy_file),
            "policy_check_interval": "1h",  # reloads only when asked: known counts
            "mail_retry_initial": "1s",
            "mail_sweep_interval": "500ms",
            "email_cooldown": "1h",
            "rate_limits": {
                "per_ip": {"burst": 4, "per_second": 0.0001},
                "per_email": {"burst": 10, "per_second": 1},
                "global": {"burst": 100, "per_second": 10},
            },
        },
    )
    server = SynapseServer(config, metrics=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


def wait_metric(
    synapse: SynapseServer, name: str, expected: float, timeout: float = 10, **labels: str
) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(synapse)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            assert value(samples, name, **labels) == expected, (name, labels, samples)
            return samples
        time.sleep(0.1)


def outbox_attempts(synapse: SynapseServer, localpart: str) -> tuple[str, int, str | None]:
    """(status, attempts, last error) of the mail for ``localpart``; ("", 0, None) if none yet."""
    rows = synapse.query(
        """
        SELECT o.status, o.attempts, o.last_error FROM email_gate_outbox o
        JOIN email_gate_requests r ON r.id = o.request_id WHERE r.localpart = ?
        """,
        (localpart,),
    )
    assert len(rows) <= 1, rows
    if not rows:
        return "", 0, None
    return str(rows[0][0]), int(rows[0][1]), rows[0][2]


def wait_attempts(synapse: SynapseServer, localpart: str, status: str) -> tuple[int, str | None]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found, attempts, error = outbox_attempts(synapse, localpart)
        if found == status and attempts >= 1 and (status != "queued" or error):
            return attempts, error
        time.sleep(0.05)
    raise AssertionError(
        f"{localpart}: no {status} outbox row: {outbox_attempts(synapse, localpart)}"
    )


def test_the_scrape_shows_the_counts_of_a_known_run(
    metered: SynapseServer, mailbox: SmtpCatcher, policy_file: Path
) -> None:
    synapse = metered
    admin = synapse.register_admin("ops", "ops-password-1")
    start = scrape(synapse)
    assert value(start, "synapse_email_gate_policy_reloads_total", result="ok") == 1  # start-up

    # m1: sent at once.
    assert ask(synapse, "m1", "m1@example.org").status == 202
    token = token_from(mailbox.wait_for_rcpt("m1@example.org"))
    # m2: refused for good (550).
    mailbox.refuse("550 5.1.1 <m2@example.org>: no such user")
    assert ask(synapse, "m2", "m2@example.org").status == 202
    wait_attempts(synapse, "m2", "failed")
    # m3: refused for now (451), sent on a retry; the queue gauge sees it waiting.
    mailbox.refuse("451 4.3.0 later")
    assert ask(synapse, "m3", "m3@example.org").status == 202
    wait_attempts(synapse, "m3", "queued")
    queued = wait_metric(synapse, "synapse_email_gate_mail_queue_length", 1)
    assert value(queued, "synapse_email_gate_mail_queue_oldest_age_seconds") > 0
    mailbox.accept()
    mailbox.wait_for_rcpt("m3@example.org")
    # m4: m1's address again, in its cooldown: accepted, no mail.
    assert ask(synapse, "m4", "m1@example.org").status == 202
    assert request_outcome(synapse, "m4") == ("suppressed", "cooldown")

    # Refused plainly: a banned username, a malformed address, then the per-IP limit
    # (burst 4, all taken above).
    assert ask(synapse, "root", "r@example.org").status == 400
    assert ask(synapse, "m5", "not-an-address").status == 400
    assert ask(synapse, "m6", "m6@example.org").status == 429

    # A token used: an account linked to its request.
    assert registered(register(synapse, "m1", token))

    # Policy: a broken file refused, then a good one loaded.
    policy_file.write_text("banned_usernames: ['(unclosed']\n")
    assert reload_policy(synapse, admin).status == 400
    policy_file.write_text("banned_usernames: ['^root$', '^toor$']\n")
    assert reload_policy(synapse, admin).status == 200

    samples = wait_metric(synapse, "synapse_email_gate_mail_queue_length", 0)
    samples = wait_metric(synapse, "synapse_email_gate_mails_sent_total", 2)
    m3_status, m3_attempts, _ = outbox_attempts(synapse, "m3")
    expected = {
        ("synapse_email_gate_requests_total", "accepted", "accepted"): 4,
        ("synapse_email_gate_requests_total", "refused", "username_banned"): 1,
        ("synapse_email_gate_requests_total", "refused", "invalid_email"): 1,
        ("synapse_email_gate_requests_total", "refused", "rate_limited"): 1,
        ("synapse_email_gate_requests_processed_total", "issued", "issued"): 3,
        ("synapse_email_gate_requests_processed_total", "suppressed", "cooldown"): 1,
    }
    for (name, outcome, reason), count in expected.items():
        assert value(samples, name, outcome=outcome, reason=reason) == count, (name, reason)
    assert value(samples, "synapse_email_gate_tokens_issued_total", source="email") == 3
    assert value(samples, "synapse_email_gate_tokens_used_total", kind="email") == 1
    assert value(samples, "synapse_email_gate_mails_queued_total") == 3
    assert value(samples, "synapse_email_gate_mails_sent_total") == 2
    assert value(samples, "synapse_email_gate_mails_failed_total", reason="permanent") == 1
    assert m3_status == "sent"
    assert value(samples, "synapse_email_gate_mails_retried_total") == m3_attempts - 1 >= 1
    assert value(samples, "synapse_email_gate_mail_queue_oldest_age_seconds") == 0
    assert value(samples, "synapse_email_gate_policy_reloads_total", result="ok") == 2
    assert value(samples, "synapse_email_gate_policy_reloads_total", result="failed") == 1

    # One log line per decision, with its reason code; no full address at any level.
    log = synapse.log_text()
    for reason in ("accepted", "username_banned", "invalid_email", "rate_limited", "cooldown"):
        assert f"reason={reason}" in log, reason
    assert "mail failed for good, reason=permanent" in log
    for address in ("m1@example.org", "m2@example.org", "m3@example.org", "r@example.org"):
        assert address not in log, address


def test_registering_the_metrics_again_in_one_process_reuses_them() -> None:
    before = metrics.REQUESTS
    again = importlib.reload(metrics)
    assert again.REQUESTS is before
    again.request_answered(SERVER, "accepted", "accepted")
    assert metrics.QUEUE_LENGTH is again.QUEUE_LENGTH
