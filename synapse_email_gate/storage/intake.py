"""The intake: requests recorded as they are answered, a batch per transaction.

IntakeStore runs `intake_txn` through storage/group_commit.py, so under load one
transaction serves many requests; it answers each request of its batch, in
order, as a transaction of its own would have. storage/issue.py then assesses the
email side of the recorded requests.

Every recorded request reserves its username here, before anything is known
about its address: whether the address is then mailed, in cooldown, banned or
already used, the name is held the same, for `hold_ms` from the request
(docs/rules.md#username-reservations).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage.buckets import BucketBook
from synapse_email_gate.storage.group_commit import GroupCommit
from synapse_email_gate.storage.runner import Runner, select_in


@attrs.frozen
class NewRequest:
    id: str
    now_ms: int
    localpart: str
    email: str
    email_key: str
    ip: str
    lang: str
    # How long a recorded request holds its username: the token lifetime.
    hold_ms: int
    statement: str | None = None
    # The request-side rate limits it takes credit from, in order.
    limits: tuple[tuple[str, Bucket], ...] = ()


@attrs.frozen
class IntakeRefusal:
    """Why a request was not recorded: `username_reserved`, or `rate_limited` with
    the first empty bucket and the ms until it has credit again."""

    reason: str
    bucket: str = ""
    wait_ms: int = 0


def intake_txn(
    txn: LoggingTransaction, requests: Sequence[NewRequest]
) -> list[IntakeRefusal | None]:
    """Take each request's rate limits, check its username's reservation, record it
    and reserve the username for it.

    Answers None for each request recorded. The rate limits come first, so
    that asking about a reserved name costs credit like any request. The
    reservation check does not look at the address: a held name is refused to
    every address, its holder's too. The work is the same whatever the address
    is, so the answer's timing says nothing about it.
    """
    held_until = _reservations(txn, {r.localpart for r in requests})
    book = BucketBook.load(txn, {key for r in requests for key, _ in r.limits})
    answers: list[IntakeRefusal | None] = []
    recorded = []
    holds = []
    for r in requests:
        refusal = _take_limits(book, r)
        if refusal is None and held_until.get(r.localpart, 0) > r.now_ms:
            refusal = IntakeRefusal("username_reserved")
        answers.append(refusal)
        if refusal is not None:
            continue
        until = r.now_ms + r.hold_ms
        held_until[r.localpart] = until
        row = (r.id, r.now_ms, r.now_ms, r.localpart, r.email, r.email_key, r.ip, r.lang)
        recorded.append((*row, r.statement))
        holds.append((r.localpart, r.id, r.email_key, until, r.now_ms))
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
        # Found free above; the WHERE only guards against a row this transaction could
        # not see (on PostgreSQL such a row fails the transaction, which is retried).
        txn.execute_batch(
            """
            INSERT INTO email_gate_reservations (localpart, request_id, email_key, expires_ts)
            VALUES (?, ?, ?, ?)
            ON CONFLICT (localpart) DO UPDATE SET request_id = excluded.request_id,
                email_key = excluded.email_key, expires_ts = excluded.expires_ts
            WHERE email_gate_reservations.expires_ts <= ?
            """,
            holds,
        )
    return answers


def _take_limits(book: BucketBook, r: NewRequest) -> IntakeRefusal | None:
    for key, bucket in r.limits:
        wait = book.take(key, bucket, r.now_ms)
        if wait:
            return IntakeRefusal("rate_limited", key, wait)
    return None


def _reservations(txn: LoggingTransaction, localparts: Collection[str]) -> dict[str, int]:
    """localpart -> until when it is held, for those with a reservation."""
    rows = select_in(
        txn, "SELECT localpart, expires_ts FROM email_gate_reservations WHERE localpart", localparts
    )
    return {str(row[0]): int(row[1]) for row in rows}


class IntakeStore:
    """Requests recorded as they are answered, a batch per transaction (group commit)."""

    def __init__(self, runner: Runner) -> None:
        self._batches: GroupCommit[NewRequest, IntakeRefusal | None] = GroupCommit(
            runner, "intake", intake_txn
        )

    async def record(self, request: NewRequest) -> IntakeRefusal | None:
        """Take the request's rate limits, reserve its username and record it with the
        next batch: None when recorded, else why not."""
        return await self._batches.run(request)
