"""The mail queue: rows in `email_gate_outbox`, delivered by whichever process claims them.

A row is claimed by setting a lease; only the holder of an unexpired lease
sends it, so the process that answered a request and the background sweeper
never send the same mail twice. A crash after the SMTP server accepted a mail
but before the row is marked sent makes the row due again when its lease runs
out: that mail may then arrive twice (see docs/mail.md); nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage import notifications
from synapse_email_gate.storage.requests import mail_facts_txn
from synapse_email_gate.storage.runner import Runner, batch_txn, marks

# The longest pause between two attempts at one mail.
MAX_RETRY_DELAY_MS = 1_800_000
# Default lease; MailDelivery derives its own from the SMTP timeout (mail/delivery.py).
LEASE_MS = 180_000
# After these, no more mail goes to the requester: with hash_emails the address goes.
FINAL_KINDS = ("token", "denied")


@attrs.frozen
class MailFacts:
    """What a queued mail is about; `to` is the recipient, `requester` the person,
    `token` the registration token, `code` the code that verifies the address.
    A notification to moderators has no request: its `request_id` names its
    message (storage/notifications.py), `subject` and `message` hold its text."""

    to: str
    localpart: str
    token: str | None
    expires_ts: int | None
    request_id: str
    kind: str = "token"
    code: str | None = None
    statement: str | None = None
    message: str | None = None
    requester: str | None = None
    ip: str | None = None
    lang: str = "en"
    subject: str | None = None


@attrs.frozen
class ClaimedMail:
    outbox_id: str
    kind: str
    attempts: int
    created_ts: int
    facts: MailFacts


@attrs.frozen
class Disposition:
    """What to write for one attempted mail."""

    mail: ClaimedMail
    state: Literal["sent", "retry", "failed"]
    error: str | None = None
    next_attempt_ts: int = 0
    reason: str = ""  # why a mail failed: permanent, expired, unbuildable


def claim_txn(
    txn: LoggingTransaction,
    now_ms: int,
    outbox_ids: Sequence[str] | None,
    limit: int,
    lease_ms: int = LEASE_MS,
) -> list[ClaimedMail]:
    """Lease the given queued rows (whether due or not), or up to `limit` due ones,
    and load what their mails need. Rows leased by someone else are skipped."""
    if outbox_ids is not None:
        if not outbox_ids:
            return []
        txn.execute(
            f"""
            SELECT id FROM email_gate_outbox
            WHERE id IN ({marks(outbox_ids)}) AND status = 'queued' AND lease_until_ts <= ?
            """,  # noqa: S608 - only placeholders are interpolated
            (*outbox_ids, now_ms),
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
    ids = [str(row_id) for (row_id,) in txn.fetchall()]
    if not ids:
        return []
    lease_until = now_ms + lease_ms
    # One statement for the batch: on SQLite nothing else writes in between; on
    # PostgreSQL a row another claimer took since the SELECT fails this transaction
    # with a serialisation error (REPEATABLE READ), and the retry skips that row.
    txn.execute(
        f"""
        UPDATE email_gate_outbox SET lease_until_ts = ?, attempts = attempts + 1
        WHERE id IN ({marks(ids)}) AND status = 'queued' AND lease_until_ts <= ?
        """,  # noqa: S608 - only placeholders are interpolated
        (lease_until, *ids, now_ms),
    )
    if txn.rowcount != len(ids):
        raise RuntimeError("outbox rows changed while being claimed; the claim is retried")
    rows = {str(row[0]): row[1:] for row in mail_facts_txn(txn, ids)}
    notes = {str(row[0]): row[1:] for row in notifications.mail_facts_txn(txn, ids)}
    claimed = []
    for row_id in ids:
        note = notes.get(row_id)
        if note is not None:
            claimed.append(_notification(row_id, *note))
            continue
        row = rows.get(row_id)
        if row is None:
            continue
        (kind, attempts, created_ts, recipient, request_id, email, localpart, token,
         expires_ts, code, statement, decision_message, ip, lang) = row  # fmt: skip
        claimed.append(
            ClaimedMail(
                outbox_id=row_id,
                kind=kind,
                attempts=attempts,
                created_ts=created_ts,
                facts=MailFacts(
                    kind=kind,
                    to=recipient or email,
                    localpart=localpart,
                    token=token,
                    expires_ts=expires_ts,
                    request_id=request_id,
                    code=code,
                    statement=statement,
                    message=decision_message,
                    requester=email,
                    ip=ip,
                    lang=lang or "en",
                ),
            )
        )
    return claimed


def _notification(
    outbox_id: str,
    attempts: int,
    created_ts: int,
    recipient: str,
    message_id: str,
    subject: str,
    body: str,
) -> ClaimedMail:
    """A notification to moderators: no request, its text made when it was queued."""
    facts = MailFacts(
        kind=notifications.MAIL_KIND,
        to=recipient,
        localpart="",
        token=None,
        expires_ts=None,
        request_id=message_id,
        subject=subject,
        message=body,
    )
    return ClaimedMail(outbox_id, notifications.MAIL_KIND, attempts, created_ts, facts)


def record_txn(
    txn: LoggingTransaction, outcomes: Sequence[Disposition], now_ms: int, forget_address: bool
) -> None:
    """Write the outcome of a batch of attempts: one batched statement per kind."""
    sent = [o.mail for o in outcomes if o.state == "sent"]
    failed = [o for o in outcomes if o.state == "failed"]
    retried = [o for o in outcomes if o.state == "retry"]
    batch_txn(
        txn,
        """
        UPDATE email_gate_outbox SET status = 'sent', sent_ts = ?, last_error = NULL,
            lease_until_ts = 0
        WHERE id = ?
        """,
        [(now_ms, mail.outbox_id) for mail in sent],
    )
    batch_txn(
        txn,
        """
        UPDATE email_gate_outbox SET status = 'failed', last_error = ?, lease_until_ts = 0
        WHERE id = ?
        """,
        [(o.error or "", o.mail.outbox_id) for o in failed],
    )
    batch_txn(
        txn,
        """
        UPDATE email_gate_outbox SET last_error = ?, next_attempt_ts = ?, lease_until_ts = 0
        WHERE id = ?
        """,
        [(o.error or "", o.next_attempt_ts, o.mail.outbox_id) for o in retried],
    )
    if forget_address:
        finished = [*sent, *(o.mail for o in failed)]
        batch_txn(
            txn,
            "UPDATE email_gate_requests SET email = email_key WHERE id = ?",
            [(m.facts.request_id,) for m in finished if m.kind in FINAL_KINDS],
        )


def queue_state_txn(txn: LoggingTransaction) -> tuple[int, int | None]:
    """(mails waiting, created_ts of the oldest one or None)."""
    txn.execute("SELECT COUNT(*), MIN(created_ts) FROM email_gate_outbox WHERE status = 'queued'")
    row = txn.fetchone()
    if row is None:
        return 0, None
    count, oldest = row
    return int(count), None if oldest is None else int(oldest)


class OutboxStore:
    """The mail queue: leases on due mails, and what became of them."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def claim(
        self, now_ms: int, outbox_ids: Sequence[str] | None, limit: int, lease_ms: int
    ) -> list[ClaimedMail]:
        """Lease the mails named (or up to `limit` due ones); see `claim_txn`."""
        return await self._runner.run(
            "email_gate_claim_mail", claim_txn, now_ms, outbox_ids, limit, lease_ms
        )

    async def record(
        self, outcomes: Sequence[Disposition], now_ms: int, forget_address: bool
    ) -> None:
        """Write what became of a batch of attempts."""
        await self._runner.run(
            "email_gate_mail_record", record_txn, outcomes, now_ms, forget_address
        )

    async def backlog(self) -> tuple[int, int | None]:
        """(mails waiting, created_ts of the oldest one or None)."""
        return await self._runner.run("email_gate_queue_state", queue_state_txn)


def next_attempt_delay_ms(attempts: int, initial_ms: int = 30_000) -> int:
    """Exponential backoff after the `attempts`-th failure: initial, 2x, 4x, ... capped
    at 30 min (with the default 30 s: 30 s, 1 min, 2 min, 4 min, ...)."""
    exponent = min(max(0, attempts - 1), 30)
    return int(min(initial_ms * 2**exponent, max(MAX_RETRY_DELAY_MS, initial_ms)))
