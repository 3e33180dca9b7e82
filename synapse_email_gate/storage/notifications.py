"""What moderators are to be told: events recorded by any process, delivered by
the background-tasks one (moderation/notifications.py).

`email_gate_notifications` holds one row per event; `mailed_ts` and `posted_ts`
say when each channel took it (0: not for that channel; NULL: not yet).
`email_gate_notification_messages` holds each message a channel sent; a mail
message is queued in the outbox (kind `notification`, its `request_id` naming
the message row) in the same transaction that marks its events mailed, so a
restart or an SMTP outage loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.rules.notifications import Event
from synapse_email_gate.storage.requests import queue_mail_txn
from synapse_email_gate.storage.runner import Runner, batch_txn, marks, select_in

Channel = Literal["mail", "room"]
_COLUMN: dict[Channel, str] = {"mail": "mailed_ts", "room": "posted_ts"}

MAIL_KIND = "notification"
# Events and messages are kept this long (the mails are long sent or given up by then).
KEEP_MS = 7 * 86_400_000
# Events marked per statement (SQLite allows 999 placeholders in older builds).
_CHUNK = 500


def record_txn(txn: LoggingTransaction, events: Sequence[Event]) -> None:
    batch_txn(
        txn,
        """
        INSERT INTO email_gate_notifications (id, ts, kind, user_id, email, detail)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        [(e.event_id, e.ts, e.kind, e.user_id, e.email, e.detail) for e in events],
    )


def pending_txn(txn: LoggingTransaction, channel: Channel, limit: int) -> list[Event]:
    column = _COLUMN[channel]
    txn.execute(
        f"""
        SELECT id, ts, kind, user_id, email, detail FROM email_gate_notifications
        WHERE {column} IS NULL ORDER BY ts, id LIMIT ?
        """,  # noqa: S608 - the column name is one of two constants
        (limit,),
    )
    return [Event(*row) for row in txn.fetchall()]


def window_txn(txn: LoggingTransaction, channel: Channel, since_ms: int) -> tuple[int, int | None]:
    """(messages the channel sent since `since_ms`, when it sent its last one)."""
    txn.execute(
        "SELECT COUNT(*) FROM email_gate_notification_messages WHERE channel = ? AND ts >= ?",
        (channel, since_ms),
    )
    row = txn.fetchone()
    count = int(row[0]) if row else 0
    txn.execute(
        "SELECT MAX(ts) FROM email_gate_notification_messages WHERE channel = ?", (channel,)
    )
    row = txn.fetchone()
    last = None if row is None or row[0] is None else int(row[0])
    return count, last


def _mark_txn(
    txn: LoggingTransaction, channel: Channel, event_ids: Sequence[str], value: int
) -> None:
    column = _COLUMN[channel]
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        txn.execute(
            f"UPDATE email_gate_notifications SET {column} = ? WHERE id IN ({marks(chunk)})",  # noqa: S608
            (value, *chunk),
        )


def skip_txn(txn: LoggingTransaction, channel: Channel, event_ids: Sequence[str]) -> None:
    """These events are not for this channel."""
    _mark_txn(txn, channel, event_ids, 0)


def sent_txn(
    txn: LoggingTransaction,
    channel: Channel,
    message_id: str,
    event_ids: Sequence[str],
    now_ms: int,
    subject: str,
    body: str,
    mails: Sequence[tuple[str, str]] = (),
) -> None:
    """A message about `event_ids` went out on `channel` (for mail: is queued, one
    outbox row per (outbox id, recipient) of `mails`)."""
    txn.execute(
        """
        INSERT INTO email_gate_notification_messages (id, channel, ts, events, subject, body)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        (message_id, channel, now_ms, len(event_ids), subject, body),
    )
    for outbox_id, recipient in mails:
        queue_mail_txn(txn, outbox_id, message_id, MAIL_KIND, recipient, now_ms)
    _mark_txn(txn, channel, event_ids, now_ms)


def purge_txn(txn: LoggingTransaction, now_ms: int) -> None:
    before = now_ms - KEEP_MS
    txn.execute(
        """
        DELETE FROM email_gate_notifications
        WHERE ts < ? AND mailed_ts IS NOT NULL AND posted_ts IS NOT NULL
        """,
        (before,),
    )
    txn.execute(
        f"""
        DELETE FROM email_gate_outbox WHERE kind = '{MAIL_KIND}' AND status <> 'queued'
        AND request_id IN (SELECT id FROM email_gate_notification_messages WHERE ts < ?)
        """,  # noqa: S608 - a constant
        (before,),
    )
    txn.execute(
        """
        DELETE FROM email_gate_notification_messages WHERE ts < ? AND NOT EXISTS (
            SELECT 1 FROM email_gate_outbox o
            WHERE o.request_id = email_gate_notification_messages.id
        )
        """,
        (before,),
    )


def mail_facts_txn(txn: LoggingTransaction, outbox_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """(outbox id, attempts, created_ts, recipient, message id, subject, body) of the
    notification mails among `outbox_ids`."""
    rows = select_in(
        txn,
        f"""
        SELECT o.id, o.attempts, o.created_ts, o.recipient, m.id, m.subject, m.body
        FROM email_gate_outbox o JOIN email_gate_notification_messages m ON m.id = o.request_id
        WHERE o.kind = '{MAIL_KIND}' AND o.id
        """,  # noqa: S608 - a constant
        outbox_ids,
    )
    return [tuple(row) for row in rows]


class NotificationStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def record(self, events: Sequence[Event]) -> None:
        await self._runner.run("email_gate_notify_record", record_txn, events)

    async def pending(self, channel: Channel, limit: int) -> list[Event]:
        return await self._runner.run("email_gate_notify_pending", pending_txn, channel, limit)

    async def window(self, channel: Channel, since_ms: int) -> tuple[int, int | None]:
        return await self._runner.run("email_gate_notify_window", window_txn, channel, since_ms)

    async def skip(self, channel: Channel, event_ids: Sequence[str]) -> None:
        await self._runner.run("email_gate_notify_skip", skip_txn, channel, event_ids)

    async def sent(
        self,
        channel: Channel,
        message_id: str,
        event_ids: Sequence[str],
        now_ms: int,
        subject: str,
        body: str,
        mails: Sequence[tuple[str, str]] = (),
    ) -> None:
        await self._runner.run(
            "email_gate_notify_sent",
            sent_txn,
            channel,
            message_id,
            event_ids,
            now_ms,
            subject,
            body,
            mails,
        )

    async def purge(self, now_ms: int) -> None:
        await self._runner.run("email_gate_notify_purge", purge_txn, now_ms)
