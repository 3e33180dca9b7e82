"""The mail queue: rows in `email_gate_outbox`, delivered by whichever process claims them.

A row is claimed by setting a lease; only the holder of an unexpired lease
sends it, so the process that answered a request and the background sweeper
never send the same mail twice. A crash after the SMTP server accepted a mail
but before the row is marked sent makes the row due again when its lease runs
out: that mail may then arrive twice (see docs/internals.md); nothing is lost.
"""

from __future__ import annotations

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.mail import TokenMailFacts
from synapse_email_gate.store import forget_address_txn

LEASE_MS = 120_000


@attrs.frozen
class ClaimedMail:
    outbox_id: str
    kind: str
    attempts: int
    created_ts: int
    facts: TokenMailFacts


def claim_txn(
    txn: LoggingTransaction, now_ms: int, outbox_id: str | None, limit: int
) -> list[ClaimedMail]:
    """Lease due rows (one given row, or up to `limit` due ones) and load what they need."""
    if outbox_id is not None:
        txn.execute(
            """
            SELECT id FROM email_gate_outbox
            WHERE id = ? AND status = 'queued' AND lease_until_ts <= ?
            """,
            (outbox_id, now_ms),
        )
    else:
        txn.execute(
            """
            SELECT id FROM email_gate_outbox
            WHERE status = 'queued' AND next_attempt_ts <= ? AND lease_until_ts <= ?
            ORDER BY next_attempt_ts LIMIT ?
            """,
            (now_ms, now_ms, limit),
        )
    claimed = []
    for (row_id,) in txn.fetchall():
        txn.execute(
            """
            UPDATE email_gate_outbox SET lease_until_ts = ?, attempts = attempts + 1
            WHERE id = ? AND status = 'queued' AND lease_until_ts <= ?
            """,
            (now_ms + LEASE_MS, row_id, now_ms),
        )
        if txn.rowcount != 1:
            continue
        txn.execute(
            """
            SELECT o.kind, o.attempts, o.created_ts, r.id, r.email, r.localpart, r.token,
                   r.expires_ts
            FROM email_gate_outbox o JOIN email_gate_requests r ON r.id = o.request_id
            WHERE o.id = ?
            """,
            (row_id,),
        )
        row = txn.fetchone()
        if row is None:
            continue
        kind, attempts, created_ts, request_id, email, localpart, token, expires_ts = row
        claimed.append(
            ClaimedMail(
                outbox_id=str(row_id),
                kind=kind,
                attempts=attempts,
                created_ts=created_ts,
                facts=TokenMailFacts(
                    to=email,
                    localpart=localpart,
                    token=token,
                    expires_ts=expires_ts,
                    request_id=request_id,
                ),
            )
        )
    return claimed


def mark_sent_txn(
    txn: LoggingTransaction, mail: ClaimedMail, now_ms: int, forget_address: bool
) -> None:
    txn.execute(
        "UPDATE email_gate_outbox SET status = 'sent', sent_ts = ?, last_error = NULL WHERE id = ?",
        (now_ms, mail.outbox_id),
    )
    if forget_address:
        forget_address_txn(txn, mail.facts.request_id)


def mark_retry_txn(
    txn: LoggingTransaction, outbox_id: str, error: str, next_attempt_ts: int
) -> None:
    txn.execute(
        """
        UPDATE email_gate_outbox SET last_error = ?, next_attempt_ts = ?, lease_until_ts = 0
        WHERE id = ?
        """,
        (error, next_attempt_ts, outbox_id),
    )


def mark_failed_txn(
    txn: LoggingTransaction, mail: ClaimedMail, error: str, forget_address: bool
) -> None:
    txn.execute(
        "UPDATE email_gate_outbox SET status = 'failed', last_error = ? WHERE id = ?",
        (error, mail.outbox_id),
    )
    if forget_address:
        forget_address_txn(txn, mail.facts.request_id)


def next_attempt_delay_ms(attempts: int) -> int:
    """Exponential backoff: 30 s, 1 min, 2 min, ... capped at 30 min."""
    return int(min(30_000 * 2 ** max(0, attempts - 1), 1_800_000))
