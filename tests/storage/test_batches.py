"""A batch of requests in one transaction answers each as its own transaction would.

storage/intake.py on real SQLite and PostgreSQL: the group commit (storage/group_commit.py)
relies on these answers being the ones sequential transactions would give.
"""

from __future__ import annotations

import threading
import time

import attrs
import pytest

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage.buckets import BucketBook
from synapse_email_gate.storage.intake import IntakeRefusal, NewRequest, intake_txn
from synapse_email_gate.storage.issue import Issued, NotIssued, issue_txn
from synapse_email_gate.storage.schema import create_schema
from tests.harness.postgres import PostgresCluster
from tests.storage.conftest import REGISTRATION_TOKENS, Txn
from tests.storage.test_store import (
    NOW,
    issue_params,
    new_request,
    receive,
    status,
    take,
    token_row,
)

TIGHT = Bucket(burst=2, per_second=0.5)


def limited(request: NewRequest, *limits: tuple[str, Bucket]) -> NewRequest:
    return attrs.evolve(request, limits=limits)


def test_intake_batch_takes_limits_in_arrival_order(txn: Txn) -> None:
    requests = [
        limited(new_request(f"r{n}", f"user{n}", f"u{n}@example.org"), ("ip:x", TIGHT))
        for n in range(3)
    ]
    assert intake_txn(txn, requests) == [None, None, IntakeRefusal("rate_limited", "ip:x", 2000)]
    txn.commit()
    txn.execute("SELECT id FROM email_gate_requests ORDER BY id")
    assert [row[0] for row in txn.fetchall()] == ["r0", "r1"]
    # The stored bucket is what two sequential takes would have left.
    assert take(txn, "ip:x", TIGHT, NOW) == 2000


def test_intake_batch_stops_at_the_first_empty_bucket_like_sequential_takes(txn: Txn) -> None:
    one = Bucket(burst=1, per_second=0.0)
    requests = [
        limited(new_request("a", "a", "a@example.org"), ("ip:a", TIGHT), ("global", one)),
        limited(new_request("b", "b", "b@example.org"), ("ip:a", TIGHT), ("global", one)),
    ]
    answers = intake_txn(txn, requests)
    assert answers[0] is None
    assert answers[1] is not None and answers[1].bucket == "global"
    txn.commit()
    # The refused request still took its per-IP credit, as it would alone: none is left.
    assert take(txn, "ip:a", TIGHT, NOW) == 2000


def test_asking_for_a_reserved_username_costs_rate_limit_credit(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    two = Bucket(2, 0.0)
    requests = [
        limited(new_request(f"r{n}", "alice", address), ("ip:y", two))
        for n, address in enumerate(
            ["eve@example.org", "alice@example.org", "alice+x@example.org"], start=2
        )
    ]
    # The same answer whoever asks, the holder too; the third finds the bucket empty
    # before it learns anything about the name.
    answers = intake_txn(txn, requests)
    assert answers[:2] == [IntakeRefusal("username_reserved")] * 2
    assert answers[2] is not None and (answers[2].reason, answers[2].bucket) == (
        "rate_limited",
        "ip:y",
    )


def test_one_bucket_book_for_a_batch_answers_like_one_per_take(txn: Txn) -> None:
    times = [NOW, NOW, NOW, NOW + 1000, NOW + 1000, NOW + 5000, NOW + 5000, NOW + 5000]
    sequential = [take(txn, "seq", TIGHT, t) for t in times]
    book = BucketBook.load(txn, {"book"})
    assert [book.take("book", TIGHT, t) for t in times] == sequential
    book.write(txn)
    txn.execute("SELECT tokens FROM email_gate_buckets WHERE bucket IN ('seq', 'book')")
    rows = txn.fetchall()
    assert len(rows) == 2 and rows[0][0] == pytest.approx(rows[1][0])


def test_issue_batch_rolls_back_only_the_suppressed_request(txn: Txn) -> None:
    receive(txn, "r1", "alice", "same@example.org")
    receive(txn, "r2", "bob", "same@example.org")
    receive(txn, "r3", "carol", "carol@example.org")
    answers = issue_txn(
        txn, [issue_params("r1"), issue_params("r2"), issue_params("r3")], lambda _: False
    )
    txn.commit()
    assert isinstance(answers[0], Issued)
    assert answers[1] == NotIssued("cooldown")
    assert isinstance(answers[2], Issued)
    assert token_row(txn, "Tr1") is not None and token_row(txn, "Tr3") is not None
    assert token_row(txn, "Tr2") is None
    assert status(txn, "r2") == ("suppressed", "cooldown")
    # r2 made no mail; it keeps the reservation of "bob" that the intake made for it.
    txn.execute("SELECT localpart, request_id FROM email_gate_reservations ORDER BY localpart")
    assert txn.fetchall() == [("alice", "r1"), ("bob", "r2"), ("carol", "r3")]
    txn.execute("SELECT id FROM email_gate_outbox ORDER BY id")
    assert [row[0] for row in txn.fetchall()] == ["or1", "or3"]


def test_issue_batch_answers_a_repeated_request_once(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    first, second = issue_txn(
        txn, [issue_params("r1"), issue_params("r1", token="T2", outbox_id="o2")], lambda _: False
    )
    txn.commit()
    assert isinstance(first, Issued) and second is None
    assert token_row(txn, "T2") is None


def test_issue_batch_suppresses_banned_addresses(txn: Txn) -> None:
    receive(txn, "r1", "alice", "spam@bad.example")
    receive(txn, "r2", "bob", "bob@example.org")
    answers = issue_txn(
        txn, [issue_params("r1"), issue_params("r2")], lambda address: address.endswith(".example")
    )
    txn.commit()
    assert answers[0] == NotIssued("email_banned")
    assert isinstance(answers[1], Issued)
    assert status(txn, "r1") == ("suppressed", "email_banned")


def test_one_intake_batch_reserves_a_username_for_its_first_request_only(txn: Txn) -> None:
    requests = [
        new_request("r1", "alice", "alice@example.org"),
        new_request("r2", "alice", "alice@example.org"),
        new_request("r3", "alice", "eve@example.org"),
        new_request("r4", "bob", "eve@example.org"),
    ]
    refused = IntakeRefusal("username_reserved")
    assert intake_txn(txn, requests) == [None, refused, refused, None]
    txn.commit()
    txn.execute("SELECT localpart, request_id FROM email_gate_reservations ORDER BY localpart")
    assert txn.fetchall() == [("alice", "r1"), ("bob", "r4")]


def test_an_issue_batch_never_issues_for_a_name_another_request_holds(txn: Txn) -> None:
    receive(txn, "r1", "alice", "alice@example.org")
    # A request recorded without its reservation (by a module version before this one).
    txn.execute(
        """
        INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,
            email_key, ip, lang, status)
        VALUES ('old', ?, ?, 'alice', 'alice@example.org', 'alice@example.org', '', 'en',
            'received')
        """,
        (NOW, NOW),
    )
    answers = issue_txn(txn, [issue_params("old"), issue_params("r1")], lambda _: False)
    txn.commit()
    assert answers[0] == NotIssued("username_reserved")
    assert isinstance(answers[1], Issued)


def test_concurrent_intakes_cannot_both_reserve_a_username_on_postgres(
    postgres: PostgresCluster,
) -> None:
    """Two processes record a request for one username at once: the second to commit
    fails with a serialisation error (Synapse's REPEATABLE READ), and its retry sees
    the winner."""
    db = postgres.create_database("store_concurrent_batches")
    first, second = (Txn(postgres.connect(db), "psycopg2") for _ in range(2))
    first.execute(REGISTRATION_TOKENS)
    create_schema(first)
    first.commit()
    for t in (first, second):
        t._connection.set_session(isolation_level="REPEATABLE READ")
    assert intake_txn(first, [new_request("r1", "alice", "alice@example.org")]) == [None]
    outcome: list[object] = []

    def contender() -> None:
        try:
            outcome.append(intake_txn(second, [new_request("r2", "alice", "eve@example.org")]))
        except Exception as e:
            outcome.append(e)

    thread = threading.Thread(target=contender)
    thread.start()
    time.sleep(0.5)  # the contender now waits on the uncommitted reservation
    first.commit()
    thread.join(10)
    (error,) = outcome
    assert getattr(error, "pgcode", None) == "40001", error
    second.rollback()
    assert intake_txn(second, [new_request("r2", "alice", "eve@example.org")]) == [
        IntakeRefusal("username_reserved")
    ]
