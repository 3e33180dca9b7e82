"""The claims and housekeeping of storage/requests.py on real SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage import outbox, requests, tokens
from synapse_email_gate.storage.buckets import BucketBook
from synapse_email_gate.storage.intake import IntakeRefusal, NewRequest, intake_txn
from synapse_email_gate.storage.issue import Issued, IssueParams, NotIssued, issue_txn
from tests.storage.conftest import Txn

HOUR = 3_600_000
NOW = 1_800_000_000_000
GENEROUS = Bucket(burst=100, per_second=1.0)


def new_request(request_id: str, localpart: str, email: str, now: int = NOW) -> NewRequest:
    return NewRequest(
        id=request_id,
        now_ms=now,
        localpart=localpart,
        email=email,
        email_key=email,
        ip="192.0.2.1",
        lang="en",
        hold_ms=24 * HOUR,
    )


def receive(txn: Txn, request_id: str, localpart: str, email: str, now: int = NOW) -> None:
    assert intake_txn(txn, [new_request(request_id, localpart, email, now)]) == [None]
    txn.commit()


def issue_params(request_id: str, now: int = NOW, **overrides: Any) -> IssueParams:
    params: dict[str, Any] = dict(
        request_id=request_id,
        now_ms=now,
        token=f"T{request_id}",
        token_lifetime_ms=24 * HOUR,
        cooldown_ms=HOUR,
        multiple_users_per_email=False,
        per_email=GENEROUS,
        outbox_id=f"o{request_id}",
    )
    params.update(overrides)
    return IssueParams(**params)


def issue(txn: Txn, request_id: str, now: int = NOW, **overrides: Any) -> Issued | NotIssued | None:
    (result,) = issue_txn(txn, [issue_params(request_id, now, **overrides)], lambda _: False)
    txn.commit()
    return result


def take(txn: Txn, key: str, bucket: Bucket, now: int) -> int:
    """One take with a book of its own, as BucketStore.take runs it."""
    book = BucketBook.load(txn, {key})
    wait = book.take(key, bucket, now)
    book.write(txn)
    return wait


def status(txn: Txn, request_id: str) -> tuple[str, str | None]:
    txn.execute("SELECT status, reason FROM email_gate_requests WHERE id = ?", (request_id,))
    row = txn.fetchone()
    return str(row[0]), row[1]


def token_row(txn: Txn, token: str) -> Any:
    txn.execute(
        "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens"
        " WHERE token = ?",
        (token,),
    )
    return txn.fetchone()


def claim(txn: Txn, token: str, asked: str | None = None, now: int = NOW) -> tokens.ClaimResult:
    result = tokens.claim_txn(txn, token, asked, "192.0.2.9", "client", now, lambda _: False)
    txn.commit()
    return result


def made(txn: Txn, localpart: str, user_id: str, now: int = NOW) -> str | None:
    """The account exists: the request its token was mailed for, if any."""
    confirmed = requests.registered_txn(txn, localpart, user_id, now)
    txn.commit()
    return None if confirmed is None else confirmed.request_id


def test_issue_creates_a_single_use_token_bound_to_the_username(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issued = issue(txn, "r1")
    assert issued is not None and issued.localpart == "alice"
    # Synapse counts no uses (the module does): no limit in its row, the expiry only.
    assert token_row(txn, "Tr1") == (None, 0, 0, NOW + 24 * HOUR)
    claimed = claim(txn, "Tr1", asked="someone_else")
    assert (claimed.outcome, claimed.localpart) == (tokens.CLAIMED, "alice")


def test_a_request_is_issued_once_even_when_processed_twice(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    assert issue(txn, "r1") is not None
    assert issue(txn, "r1", token="other", outbox_id="o2") is None


def test_same_address_within_cooldown_gets_nothing(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    receive(txn, "r2", "alice2", "alice@example.org")
    issue(txn, "r1")
    assert issue(txn, "r2", now=NOW + HOUR - 1) == NotIssued("cooldown")
    assert status(txn, "r2") == ("suppressed", "cooldown")


def reservation(txn: Txn, localpart: str) -> Any:
    txn.execute(
        "SELECT request_id, email_key, expires_ts FROM email_gate_reservations WHERE localpart = ?",
        (localpart,),
    )
    return txn.fetchone()


def test_the_intake_reserves_the_username_before_the_address_is_looked_at(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    assert reservation(txn, "alice") == ("r1", "alice@example.org", NOW + 24 * HOUR)
    assert status(txn, "r1") == ("received", None)


def test_a_reserved_username_is_refused_to_every_address_the_holder_too(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issue(txn, "r1")
    for n, address in enumerate(["mallory@example.org", "alice@example.org"], start=2):
        later = new_request(f"r{n}", "alice", address, now=NOW + HOUR)
        assert intake_txn(txn, [later]) == [IntakeRefusal("username_reserved")]
    txn.execute("SELECT COUNT(*) FROM email_gate_requests")
    assert txn.fetchone()[0] == 1
    # The hold lapses with the token, for every address alike.
    lapsed = new_request("r4", "alice", "eve@example.org", now=NOW + 24 * HOUR)
    assert intake_txn(txn, [lapsed]) == [None]
    assert reservation(txn, "alice") == ("r4", "eve@example.org", NOW + 48 * HOUR)


def test_a_suppressed_request_holds_its_username_as_long_as_a_mailed_one(txn: Txn) -> None:
    receive(txn, "r1", "mailed", "a@example.org")
    receive(txn, "r2", "quiet", "a@example.org")  # the same address: cooldown
    receive(txn, "r3", "banned", "spam@example.org")
    assert isinstance(issue(txn, "r1", now=NOW + 5), Issued)
    assert issue(txn, "r2", now=NOW + 5) == NotIssued("cooldown")
    (banned,) = issue_txn(txn, [issue_params("r3", now=NOW + 5)], lambda a: a.startswith("spam"))
    txn.commit()
    assert banned == NotIssued("email_banned")
    holds = {name: reservation(txn, name) for name in ("mailed", "quiet", "banned")}
    assert {hold[2] for hold in holds.values()} == {NOW + 24 * HOUR}
    assert [hold[0] for hold in holds.values()] == ["r1", "r2", "r3"]
    # The token of the mailed one runs out with its hold, not 24 h after the issue.
    assert token_row(txn, "Tr1") == (None, 0, 0, NOW + 24 * HOUR)


def test_an_address_with_an_account_gets_no_second_token(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issue(txn, "r1")
    claim(txn, "Tr1")
    assert made(txn, "alice", "@alice:x") == "r1"
    receive(txn, "r2", "bob", "alice@example.org", now=NOW + 2 * HOUR)
    assert issue(txn, "r2", now=NOW + 2 * HOUR) == NotIssued("already_used")
    receive(txn, "r3", "carol", "alice@example.org", now=NOW + 2 * HOUR)
    issued = issue(txn, "r3", now=NOW + 2 * HOUR, multiple_users_per_email=True)
    assert isinstance(issued, Issued)


def test_per_address_bucket_limits_tokens(txn: Txn) -> None:
    tight = Bucket(burst=1, per_second=0.0)
    receive(txn, "r1", "alice", "alice@example.org")
    receive(txn, "r2", "alice2", "alice@example.org", now=NOW + 2 * HOUR)
    issue(txn, "r1", per_email=tight)
    assert issue(txn, "r2", now=NOW + 2 * HOUR, per_email=tight) == NotIssued("rate_limited_email")


def test_bucket_allows_burst_then_says_how_long_to_wait(txn: Txn) -> None:
    bucket = Bucket(burst=2, per_second=0.5)
    assert take(txn, "k", bucket, NOW) == 0
    assert take(txn, "k", bucket, NOW) == 0
    assert take(txn, "k", bucket, NOW) == 2000
    assert take(txn, "k", bucket, NOW + 2000) == 0


def test_registration_links_only_a_request_whose_token_was_presented(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issue(txn, "r1")
    assert made(txn, "alice", "@alice:x") is None
    claim(txn, "Tr1")
    assert made(txn, "alice", "@alice:x") == "r1"


def test_outbox_row_is_leased_to_one_sender_at_a_time(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    issue(txn, "r1")
    first = outbox.claim_txn(txn, NOW, None, 10)
    second = outbox.claim_txn(txn, NOW, None, 10)
    assert [m.outbox_id for m in first] == ["or1"]
    assert second == []
    after_lease = outbox.claim_txn(txn, NOW + outbox.LEASE_MS, None, 10)
    assert [m.outbox_id for m in after_lease] == ["or1"]


def test_hashing_forgets_the_address_once_mailed(txn: Txn) -> None:
    request = NewRequest(
        id="r1",
        now_ms=NOW,
        localpart="alice",
        email="alice@example.org",
        email_key="hmac:abc",
        ip="192.0.2.1",
        lang="en",
        hold_ms=24 * HOUR,
    )
    intake_txn(txn, [request])
    issue(txn, "r1")
    (mail,) = outbox.claim_txn(txn, NOW, None, 10)
    assert mail.facts.to == "alice@example.org"
    outbox.record_txn(txn, [outbox.Disposition(mail, "sent")], NOW, True)
    txn.execute("SELECT email FROM email_gate_requests WHERE id = 'r1'")
    assert txn.fetchone() == ("hmac:abc",)


def test_purge_keeps_what_retention_allows_and_deletes_the_rest(txn: Txn) -> None:
    day = 24 * HOUR
    receive(txn, "old-unfinished", "a", "a@example.org", now=NOW - 10 * day)
    receive(txn, "new-unfinished", "b", "b@example.org", now=NOW - day)
    receive(txn, "old-finished", "c", "c@example.org", now=NOW - 100 * day)
    receive(txn, "new-finished", "d", "d@example.org", now=NOW - 10 * day)
    for rid, now in (("old-finished", NOW - 100 * day), ("new-finished", NOW - 10 * day)):
        issue(txn, rid, now=now)
        claim(txn, f"T{rid}", now=now)
        made(txn, "c" if rid == "old-finished" else "d", "@x:y", now)
    deleted = requests.purge_txn(txn, NOW, 7 * day, 90 * day, HOUR, day)
    txn.execute("SELECT id FROM email_gate_requests ORDER BY id")
    assert [row[0] for row in txn.fetchall()] == ["new-finished", "new-unfinished"]
    assert deleted["requests"] == 2
    txn.execute("SELECT request_id FROM email_gate_outbox ORDER BY request_id")
    assert [row[0] for row in txn.fetchall()] == ["new-finished"]
    txn.execute("SELECT email_key FROM email_gate_addresses ORDER BY email_key")
    assert [row[0] for row in txn.fetchall()] == ["c@example.org", "d@example.org"]


def test_a_batch_of_attempts_is_claimed_and_recorded_together(txn: Txn) -> None:
    for n in range(4):
        receive(txn, f"r{n}", f"user{n}", f"u{n}@example.org")
        issue(txn, f"r{n}")
    leased = outbox.claim_txn(txn, NOW, ["or0"], 10)
    assert [m.outbox_id for m in leased] == ["or0"]
    # Named rows already leased are skipped; the others are claimed with their facts.
    claimed = outbox.claim_txn(txn, NOW, ["or0", "or1", "or2", "or3"], 10)
    assert sorted(m.outbox_id for m in claimed) == ["or1", "or2", "or3"]
    by_id = {m.outbox_id: m for m in claimed}
    assert by_id["or2"].facts.to == "u2@example.org" and by_id["or2"].attempts == 1
    outbox.record_txn(
        txn,
        [
            outbox.Disposition(by_id["or1"], "sent"),
            outbox.Disposition(by_id["or2"], "failed", "550 no such user"),
            outbox.Disposition(by_id["or3"], "retry", "451 later", NOW + 30_000),
        ],
        NOW,
        False,
    )
    txn.commit()
    txn.execute(
        "SELECT id, status, last_error, next_attempt_ts, lease_until_ts FROM email_gate_outbox"
        " WHERE id <> 'or0' ORDER BY id"
    )
    assert [tuple(row) for row in txn.fetchall()] == [
        ("or1", "sent", None, NOW, 0),
        ("or2", "failed", "550 no such user", NOW, 0),
        ("or3", "queued", "451 later", NOW + 30_000, 0),
    ]
