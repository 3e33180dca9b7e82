"""The request path's two transactions, each run for a batch of requests.

`intake_txn` records requests as they are answered; `issue_txn` then decides
their email side. service.py runs both through group_commit.py, so under load
one transaction serves many requests. Each answers every request of its batch,
in order, as a transaction of its own would have: a request that is refused
changes nothing that the next one sees.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.policy_lists import Bucket
from synapse_email_gate.ratelimit import BucketBook, take_txn
from synapse_email_gate.store import (
    IssuedToken,
    Suppressed,
    forget_address_txn,
    grant_token_txn,
    queue_mail_txn,
)


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


@attrs.frozen
class IssueParams:
    request_id: str
    now_ms: int
    token: str
    token_lifetime_ms: int
    cooldown_ms: int
    multiple_users_per_email: bool
    per_email: Bucket
    outbox_id: str
    # With `approval: required` the address is verified first: `token` becomes the
    # verification code and no registration token exists yet.
    approval: bool = False
    # With hash_emails: a request that gets no mail keeps only its address's hash.
    forget_address: bool = False


@attrs.frozen
class NotIssued:
    """The request was decided without a mail; `reason` is a reason code."""

    reason: str


def intake_txn(
    txn: LoggingTransaction, requests: Sequence[NewRequest]
) -> list[IntakeRefusal | None]:
    """Check each request's username reservation, take its rate limits, record it.

    Answers None for each request recorded. A reserved username takes no
    rate-limit token. The work is the same whatever the address is, so the
    answer's timing says nothing about it.
    """
    reservations = _reservations(txn, {r.localpart for r in requests})
    book = BucketBook(txn, {key for r in requests for key, _ in r.limits})
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
    book.write()
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


def issue_txn(
    txn: LoggingTransaction,
    batch: Sequence[IssueParams],
    email_banned: Callable[[str], bool],
) -> list[IssuedToken | NotIssued | None]:
    """Turn each received request into a token + queued mail, or decide it without one.

    Answers None for a request that is no longer waiting (another process, or
    an earlier item of this batch, decided it). Each request's work runs in a
    savepoint, so one that ends without a mail leaves only its own status.
    """
    ids = list(dict.fromkeys(p.request_id for p in batch))
    marks = ", ".join("?" for _ in ids)
    # A write first: Python's sqlite3 opens the transaction only before a write,
    # and a savepoint outside a transaction would commit when released.
    txn.execute(
        f"""
        UPDATE email_gate_requests SET updated_ts = ?
        WHERE id IN ({marks}) AND status = 'received'
        """,  # noqa: S608 - placeholders only
        (max(p.now_ms for p in batch), *ids),
    )
    txn.execute(
        f"""
        SELECT id, localpart, email, email_key, lang FROM email_gate_requests
        WHERE id IN ({marks}) AND status = 'received'
        """,  # noqa: S608 - placeholders only
        ids,
    )
    waiting = {str(row[0]): tuple(row[1:]) for row in txn.fetchall()}
    answers: list[IssuedToken | NotIssued | None] = []
    for p in batch:
        row = waiting.pop(p.request_id, None)
        if row is None:
            answers.append(None)
            continue
        localpart, email, email_key, lang = row
        reason = "email_banned" if email_banned(email) else None
        if reason is None:
            txn.execute("SAVEPOINT email_gate_issue")
            try:
                answers.append(_issue_one(txn, p, localpart, email, email_key, lang))
                txn.execute("RELEASE SAVEPOINT email_gate_issue")
                continue
            except Suppressed as e:
                txn.execute("ROLLBACK TO SAVEPOINT email_gate_issue")
                txn.execute("RELEASE SAVEPOINT email_gate_issue")
                reason = e.reason
        suppress_txn(txn, p.request_id, reason, p.now_ms, p.forget_address)
        answers.append(NotIssued(reason))
    return answers


def _issue_one(
    txn: LoggingTransaction, p: IssueParams, localpart: str, email: str, email_key: str, lang: str
) -> IssuedToken:
    """Claims, token and queued mail for one request; raises Suppressed to undo them."""
    expires_ts = p.now_ms + p.token_lifetime_ms
    txn.execute(
        "SELECT request_id, email_key, expires_ts FROM email_gate_reservations WHERE localpart = ?",
        (localpart,),
    )
    held = txn.fetchone()
    if held is not None and held[2] > p.now_ms and held[1] != email_key:
        raise Suppressed("username_reserved")
    _claim_address(txn, email_key, p)
    if take_txn(txn, f"email:{email_key}", p.per_email, p.now_ms):
        raise Suppressed("rate_limited_email")
    _claim_reservation(txn, localpart, email_key, p.request_id, expires_ts, p)
    if held is not None:
        _retire_request(txn, str(held[0]), p.now_ms)

    if p.approval:
        txn.execute(
            """
            UPDATE email_gate_requests
            SET status = 'verifying', verify_code = ?, expires_ts = ?, updated_ts = ?
            WHERE id = ?
            """,
            (p.token, expires_ts, p.now_ms, p.request_id),
        )
        queue_mail_txn(txn, p.outbox_id, p.request_id, "verify", None, p.now_ms)
    else:
        grant_token_txn(txn, p.request_id, p.token, expires_ts, p.now_ms)
        queue_mail_txn(txn, p.outbox_id, p.request_id, "token", None, p.now_ms)
    return IssuedToken(
        request_id=p.request_id,
        outbox_id=p.outbox_id,
        token=p.token,
        localpart=localpart,
        email=email,
        lang=lang,
        expires_ts=expires_ts,
    )


def _claim_address(txn: LoggingTransaction, email_key: str, p: IssueParams) -> None:
    """Mark the address as mailed now, unless in cooldown or already used."""
    single_use = "" if p.multiple_users_per_email else "AND email_gate_addresses.accounts = 0"
    txn.execute(
        f"""
        INSERT INTO email_gate_addresses (email_key, last_sent_ts, accounts) VALUES (?, ?, 0)
        ON CONFLICT (email_key) DO UPDATE SET last_sent_ts = excluded.last_sent_ts
        WHERE email_gate_addresses.last_sent_ts <= ? {single_use}
        """,  # noqa: S608 - the only interpolation is a constant clause
        (email_key, p.now_ms, p.now_ms - p.cooldown_ms),
    )
    if txn.rowcount == 1:
        return
    txn.execute("SELECT accounts FROM email_gate_addresses WHERE email_key = ?", (email_key,))
    row = txn.fetchone()
    if row is not None and row[0] > 0 and not p.multiple_users_per_email:
        raise Suppressed("already_used")
    raise Suppressed("cooldown")


def _claim_reservation(
    txn: LoggingTransaction,
    localpart: str,
    email_key: str,
    request_id: str,
    expires_ts: int,
    p: IssueParams,
) -> None:
    """Reserve `localpart` for this request (the conditional upsert decides races)."""
    txn.execute(
        """
        INSERT INTO email_gate_reservations (localpart, request_id, email_key, expires_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (localpart) DO UPDATE SET
            request_id = excluded.request_id,
            email_key = excluded.email_key,
            expires_ts = excluded.expires_ts
        WHERE email_gate_reservations.expires_ts <= ?
           OR email_gate_reservations.email_key = excluded.email_key
        """,
        (localpart, request_id, email_key, expires_ts, p.now_ms),
    )
    if txn.rowcount != 1:
        raise Suppressed("username_reserved")


def _retire_request(txn: LoggingTransaction, request_id: str, now_ms: int) -> None:
    """A newer request took over the reservation: its unused token stops working."""
    txn.execute(
        """
        SELECT token FROM email_gate_requests
        WHERE id = ? AND status IN ('issued', 'verifying', 'pending')
        """,
        (request_id,),
    )
    row = txn.fetchone()
    if row is None:
        return
    if row[0] is not None:
        txn.execute(
            "DELETE FROM registration_tokens WHERE token = ? AND pending = 0 AND completed = 0",
            (row[0],),
        )
    txn.execute(
        """
        UPDATE email_gate_requests SET status = 'superseded', updated_ts = ?
        WHERE id = ? AND status IN ('issued', 'verifying', 'pending')
        """,
        (now_ms, request_id),
    )


def suppress_txn(
    txn: LoggingTransaction, request_id: str, reason: str, now_ms: int, forget_address: bool
) -> None:
    txn.execute(
        """
        UPDATE email_gate_requests SET status = 'suppressed', reason = ?, updated_ts = ?
        WHERE id = ? AND status = 'received'
        """,
        (reason, now_ms, request_id),
    )
    if forget_address:
        forget_address_txn(txn, request_id)
