"""The intake: requests recorded as they are answered, a batch per transaction.

service.py runs `intake_txn` through group_commit.py, so under load one
transaction serves many requests; it answers each request of its batch, in
order, as a transaction of its own would have. issue_txns.py then decides the
email side of the recorded requests.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.policy_lists import Bucket
from synapse_email_gate.ratelimit import BucketBook


@attrs.frozen
class NewRequest:
    id: str
    now_ms: int
    localpart: str
    email: str
    email_key: str
    ip: str
    lang: str
    statement: str | None = None
    # The request-side rate limits it takes a token from, in order.
    limits: tuple[tuple[str, Bucket], ...] = ()


@attrs.frozen
class IntakeRefusal:
    """Why a request was not recorded: `username_reserved`, or `rate_limited` with
    the first empty bucket and the ms until it has a token again."""

    reason: str
    bucket: str = ""
    wait_ms: int = 0


def intake_txn(
    txn: LoggingTransaction, requests: Sequence[NewRequest]
) -> list[IntakeRefusal | None]:
    """Check each request's username reservation, take its rate limits, record it.

    Answers None for each request recorded. A reserved username takes no
    rate-limit token. The work is the same whatever the address is, so the
    answer's timing says nothing about it.
    """
    reservations = _reservations(txn, {r.localpart for r in requests})
    book = BucketBook.load(txn, {key for r in requests for key, _ in r.limits})
    answers: list[IntakeRefusal | None] = []
    recorded = []
    for r in requests:
        held = reservations.get(r.localpart)
        if held is not None and held[1] > r.now_ms and held[0] != r.email_key:
            answers.append(IntakeRefusal("username_reserved"))
            continue
        refusal = _take_limits(book, r)
        answers.append(refusal)
        if refusal is None:
            row = (r.id, r.now_ms, r.now_ms, r.localpart, r.email, r.email_key, r.ip, r.lang)
            recorded.append((*row, r.statement))
    book.write(txn)
    if recorded:
        txn.execute_batch(
            """
            INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,
                email_key, ip, lang, status, statement)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'received', ?)
            """,
            recorded,
        )
    return answers


def _take_limits(book: BucketBook, r: NewRequest) -> IntakeRefusal | None:
    for key, bucket in r.limits:
        wait = book.take(key, bucket, r.now_ms)
        if wait:
            return IntakeRefusal("rate_limited", key, wait)
    return None


def _reservations(
    txn: LoggingTransaction, localparts: Collection[str]
) -> dict[str, tuple[str, int]]:
    """localpart -> (email key holding it, until when), for those with a reservation."""
    if not localparts:
        return {}
    ordered = sorted(localparts)
    marks = ", ".join("?" for _ in ordered)
    txn.execute(
        f"""
        SELECT localpart, email_key, expires_ts FROM email_gate_reservations
        WHERE localpart IN ({marks})
        """,  # noqa: S608 - placeholders only
        ordered,
    )
    return {str(row[0]): (str(row[1]), int(row[2])) for row in txn.fetchall()}
