"""Racing requests on SQLite and PostgreSQL: 100 at once for one address give one
token and one mail; 100 at once for one username with different addresses give
one reservation, one token and one mail; 100 at once for different people share
transactions (group commit) and each get their own token. Tokens are counted
through Synapse's admin API. Thirty people registering together with one invite
token each get an account (or, past its uses, a documented refusal): never a 500
from Synapse's own token counters (storage/token_counters.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    mails_to,
    quiet,
    register_concurrently,
    registered,
    scrape,
    value,
)

N = 100
GENEROUS = {"burst": 10_000, "per_second": 1000}


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "email_cooldown": "1h",
        "multiple_users_per_email": False,
        "rate_limits": {"per_ip": GENEROUS, "per_email": GENEROUS, "global": GENEROUS},
    }


def admin_tokens(synapse: SynapseServer, admin_token: str) -> list[dict[str, Any]]:
    answer = http.get(
        synapse.url("/_synapse/admin/v1/registration_tokens"),
        headers=synapse.auth_headers(admin_token),
    )
    assert answer.status == 200, answer
    tokens: list[dict[str, Any]] = answer.json()["registration_tokens"]
    return tokens


def all_at_once(synapse: SynapseServer, requests: list[tuple[str, str]]) -> list[int]:
    """POST every (username, email) from its own thread, released together."""
    start = threading.Barrier(len(requests))

    def one(username: str, email: str) -> int:
        start.wait()
        return ask(synapse, username, email).status

    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(one, u, e) for u, e in requests]
        return [f.result() for f in futures]


def wait_assessed(synapse: SynapseServer, localpart_like: str, timeout: float = 30) -> None:
    """Until no request matching ``localpart_like`` is waiting to be processed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = synapse.query(
            "SELECT COUNT(*) FROM email_gate_requests WHERE localpart LIKE ? "
            "AND status = 'received'",
            (localpart_like,),
        )[0][0]
        if waiting == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"requests for {localpart_like!r} still waiting after {timeout}s")


def statuses(synapse: SynapseServer, localpart_like: str) -> dict[str, int]:
    rows = synapse.query(
        "SELECT status, COUNT(*) FROM email_gate_requests WHERE localpart LIKE ? GROUP BY status",
        (localpart_like,),
    )
    return {str(status): int(count) for status, count in rows}


def test_100_requests_for_one_address_give_one_token_and_one_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    before = {t["token"] for t in admin_tokens(synapse, admin_token)}
    address = "racer@example.org"
    answers = all_at_once(synapse, [(f"racer{i}", address) for i in range(N)])
    assert answers == [202] * N, sorted(set(answers))

    wait_assessed(synapse, "racer%")
    new = [t for t in admin_tokens(synapse, admin_token) if t["token"] not in before]
    assert len(new) == 1, new
    # Synapse's row has no use limit: the module counts the one use (storage/tokens.py).
    assert (new[0]["uses_allowed"], new[0]["pending"], new[0]["completed"]) == (None, 0, 0)
    assert statuses(synapse, "racer%") == {"issued": 1, "suppressed": N - 1}

    mailbox.wait_for_rcpt(address, timeout=15)
    quiet(mailbox, 1.0)
    assert len(mails_to(mailbox, address)) == 1
    assert new[0]["token"] in mails_to(mailbox, address)[0].text


def test_100_requests_for_one_username_give_one_reservation_one_token_one_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    before = {t["token"] for t in admin_tokens(synapse, admin_token)}
    addresses = [f"claimant{i}@example.org" for i in range(N)]
    answers = all_at_once(synapse, [("contested", a) for a in addresses])
    # The first recorded reserves the name in its intake; every other one is refused.
    assert sorted(answers) == [202] + [400] * (N - 1), sorted(set(answers))

    wait_assessed(synapse, "contested")
    new = [t for t in admin_tokens(synapse, admin_token) if t["token"] not in before]
    assert len(new) == 1, new
    reservations = synapse.query(
        "SELECT COUNT(*) FROM email_gate_reservations WHERE localpart = ?", ("contested",)
    )
    assert reservations[0][0] == 1
    assert statuses(synapse, "contested").get("issued") == 1

    quiet(mailbox, 1.5)
    mailed = [m for m in list(mailbox.messages) if "@contested:test.local" in m.text]
    assert len(mailed) == 1, [m.rcpt_tos for m in mailed]
    assert new[0]["token"] in mailed[0].text


def test_requests_arriving_together_share_transactions_and_each_get_a_token(
    synapse: SynapseServer, mailbox: SmtpCatcher, admin_token: str
) -> None:
    before_tokens = {t["token"] for t in admin_tokens(synapse, admin_token)}
    before = scrape(synapse)
    answers = all_at_once(synapse, [(f"crowd{i}", f"crowd{i}@example.org") for i in range(N)])
    assert answers == [202] * N, sorted(set(answers))

    wait_assessed(synapse, "crowd%")
    assert statuses(synapse, "crowd%") == {"issued": N}
    new = [t for t in admin_tokens(synapse, admin_token) if t["token"] not in before_tokens]
    assert len(new) == N
    after = scrape(synapse)
    for step in ("intake", "issue"):
        batches, served = (
            value(after, name, step=step) - value(before, name, step=step)
            for name in (
                "synapse_email_gate_batches_total",
                "synapse_email_gate_batched_requests_total",
            )
        )
        assert served == N, step
        assert batches < N, (step, batches)  # some transactions served several requests
    for i in (0, N - 1):
        mailbox.wait_for_rcpt(f"crowd{i}@example.org", timeout=30)


def invite_token(synapse: SynapseServer, admin_token: str, uses: int) -> str:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": uses},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    token: str = made.json()["token"]
    return token


def synapse_counts(synapse: SynapseServer, token: str) -> tuple[int, int]:
    """(pending, completed) of the token's row in Synapse's registration_tokens."""
    ((pending, completed),) = synapse.query(
        "SELECT pending, completed FROM registration_tokens WHERE token = ?", (token,)
    )
    return int(pending), int(completed)


def test_thirty_people_registering_together_with_one_invite_token_all_get_accounts(
    synapse: SynapseServer, admin_token: str
) -> None:
    """On PostgreSQL each registration updates the token's row of Synapse twice, and
    Synapse alone tries such an update 5 times: a burst like this one answered 500."""
    token = invite_token(synapse, admin_token, 30)
    names = [f"guest{i}" for i in range(30)]
    responses = register_concurrently(synapse, names, token)
    failed = [(name, r) for name, r in zip(names, responses, strict=True) if not registered(r)]
    assert failed == []
    assert sorted(r.user_id for r in responses) == sorted(synapse.user_id(n) for n in names)
    assert synapse_counts(synapse, token) == (0, 30)
    assert "Internal server error" not in synapse.log_text()


def test_more_people_than_uses_get_as_many_accounts_and_a_documented_refusal(
    synapse: SynapseServer, admin_token: str
) -> None:
    token = invite_token(synapse, admin_token, 24)
    names = [f"latecomer{i}" for i in range(30)]
    responses = register_concurrently(synapse, names, token)
    assert sum(registered(r) for r in responses) == 24
    refusals = {
        (r.transport_response.status, r.status_code) for r in responses if not registered(r)
    }
    # Every use is held or made: the six others are told so, never a server error.
    assert refusals <= {(403, "EMAIL_GATE_TOKEN_BUSY"), (403, "EMAIL_GATE_TOKEN_USED")}, refusals
    assert synapse_counts(synapse, token)[1] == 24
    made = synapse.query("SELECT COUNT(*) FROM users WHERE name LIKE ?", ("@latecomer%",))[0][0]
    assert made == 24
