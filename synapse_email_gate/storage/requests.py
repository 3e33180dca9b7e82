"""A request's life after the intake and the issue, on the module's tables (tokens
and Synapse's `registration_tokens`: storage/tokens.py).

Each public `*_txn` function here is a transaction body, run by `RequestStore`
through the runner (storage/runner.py; `?` placeholders work on SQLite and
PostgreSQL). Claims are made with conditional upserts whose row count says
who won, so concurrent requests on several processes cannot both win: on
PostgreSQL a concurrent write makes the loser's transaction fail with a
serialisation error, which is retried, and the retry sees the winner's row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage import tokens
from synapse_email_gate.storage.runner import Runner, select_in


def grant_token_txn(
    txn: LoggingTransaction,
    request_id: str,
    localpart: str,
    token: str,
    expires_ts: int,
    now_ms: int,
    granted_by: str | None = None,
) -> None:
    """A single-use token bound to the request's username (approval mode)."""
    tokens.add_tokens_txn(
        txn,
        [
            tokens.NewToken(
                token=token,
                kind=tokens.EMAIL,
                uses_allowed=1,
                expiry_ts=expires_ts,
                created_ts=now_ms,
                created_by=granted_by,
                request_id=request_id,
                localpart=localpart,
            )
        ],
    )
    txn.execute(
        """
        UPDATE email_gate_requests
        SET status = 'issued', token = ?, expires_ts = ?, updated_ts = ?
        WHERE id = ?
        """,
        (token, expires_ts, now_ms, request_id),
    )


def queue_mail_txn(
    txn: LoggingTransaction,
    outbox_id: str,
    request_id: str,
    kind: str,
    recipient: str | None,
    now_ms: int,
) -> None:
    """Queue a mail about a request; `recipient` None means the requester."""
    txn.execute(
        """
        INSERT INTO email_gate_outbox (id, request_id, kind, recipient, status, created_ts,
            attempts, next_attempt_ts, lease_until_ts)
        VALUES (?, ?, ?, ?, 'queued', ?, 0, ?, 0)
        """,
        (outbox_id, request_id, kind, recipient, now_ms, now_ms),
    )


def request_lang_txn(txn: LoggingTransaction, request_id: str) -> str | None:
    txn.execute("SELECT lang FROM email_gate_requests WHERE id = ?", (request_id,))
    row = txn.fetchone()
    return None if row is None else str(row[0])


def received_requests_txn(
    txn: LoggingTransaction, older_than_ms: int, limit: int
) -> list[tuple[str, str]]:
    """(id, client IP) of requests still `received` since before `older_than_ms`."""
    txn.execute(
        """
        SELECT id, ip FROM email_gate_requests WHERE status = 'received' AND created_ts < ?
        ORDER BY created_ts LIMIT ?
        """,
        (older_than_ms, limit),
    )
    return [(str(row[0]), str(row[1])) for row in txn.fetchall()]


# --- registration ---------------------------------------------------------


def registered_txn(
    txn: LoggingTransaction, localpart: str, user_id: str, now_ms: int
) -> tokens.Confirmed | None:
    """A new account exists: confirm the use its token claimed and, for a mailed
    token, link the account to its request. None for an account no token of ours made."""
    confirmed = tokens.confirm_txn(txn, localpart, user_id, now_ms)
    if confirmed is not None and confirmed.request_id is not None:
        link_request_txn(txn, confirmed.request_id, localpart, user_id, now_ms)
    return confirmed


def link_request_txn(
    txn: LoggingTransaction, request_id: str, localpart: str, user_id: str, now_ms: int
) -> None:
    """The request's token made its account: counted against the address, and the
    username's reservation ends (the name is taken in Synapse now)."""
    txn.execute("SELECT email_key FROM email_gate_requests WHERE id = ?", (request_id,))
    row = txn.fetchone()
    if row is None:  # deleted by the retention purge meanwhile
        return
    txn.execute(
        """
        UPDATE email_gate_requests SET status = 'registered', user_id = ?, updated_ts = ?
        WHERE id = ?
        """,
        (user_id, now_ms, request_id),
    )
    txn.execute(
        "UPDATE email_gate_addresses SET accounts = accounts + 1 WHERE email_key = ?", (row[0],)
    )
    txn.execute("DELETE FROM email_gate_reservations WHERE localpart = ?", (localpart,))


@attrs.frozen
class TokenDetails:
    localpart: str
    expires_ts: int
    usable: bool


def token_details_txn(txn: LoggingTransaction, token: str, now_ms: int) -> TokenDetails | None:
    """What the landing page shows for a mailed token of ours; None for anything else."""
    txn.execute(
        """
        SELECT r.localpart, r.status, r.expires_ts FROM email_gate_requests r
        JOIN email_gate_tokens t ON t.token = r.token WHERE r.token = ?
        """,
        (token,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    localpart, status, expires_ts = row
    usable = status == "issued" and tokens.usable_txn(txn, token, now_ms)
    return TokenDetails(localpart=localpart, expires_ts=expires_ts, usable=usable)


# --- revocation (policy/revocation.py) -----------------------------------------------------

# Requests that still hold a promise: a token that may be used, a code that may be
# confirmed, a decision to come, or an assessment (the issue step) to come.
_OPEN = "('received', 'issued', 'verifying', 'pending')"


@attrs.frozen
class OpenRequest:
    id: str
    localpart: str
    email: str
    email_key: str
    ip: str


def open_requests_txn(txn: LoggingTransaction, now_ms: int) -> list[OpenRequest]:
    txn.execute(
        f"""
        SELECT id, localpart, email, email_key, ip FROM email_gate_requests
        WHERE status IN {_OPEN} AND (expires_ts IS NULL OR expires_ts > ?)
        """,  # noqa: S608 - a constant list
        (now_ms,),
    )
    return [OpenRequest(*map(str, row)) for row in txn.fetchall()]


def revoke_banned_txn(
    txn: LoggingTransaction, now_ms: int, reason_of: Callable[[OpenRequest], str | None]
) -> list[tuple[str, str]]:
    """Revoke every open request `reason_of` names a reason for (the matching runs
    here, on the database thread, not on the reactor)."""
    matches = []
    for request in open_requests_txn(txn, now_ms):
        reason = reason_of(request)
        if reason is not None:
            matches.append((request.id, reason))
    return revoke_requests_txn(txn, matches, now_ms)


def revoke_requests_txn(
    txn: LoggingTransaction, revocations: Sequence[tuple[str, str]], now_ms: int
) -> list[tuple[str, str]]:
    """Revoke open requests, each (request id, reason): the request is `revoked`, its
    token stops working, its queued mails are not sent; its reservation lapses as usual.
    Returns those revoked here (another process may have been first)."""
    done = []
    for request_id, reason in revocations:
        txn.execute(
            f"""
            UPDATE email_gate_requests SET status = 'revoked', reason = ?, updated_ts = ?
            WHERE id = ? AND status IN {_OPEN}
            """,  # noqa: S608 - a constant list
            (reason, now_ms, request_id),
        )
        if txn.rowcount != 1:
            continue
        done.append((request_id, reason))
        txn.execute("SELECT token FROM email_gate_requests WHERE id = ?", (request_id,))
        row = txn.fetchone()
        if row is not None and row[0] is not None:
            tokens.revoke_txn(txn, [str(row[0])], reason, now_ms)
        # The reservation stays until it lapses, as every request's does: ending it
        # here would free only names whose requests were still open (mailed ones),
        # and so tell which addresses had been mailed.
        txn.execute(
            """
            UPDATE email_gate_outbox SET status = 'failed', last_error = ?, lease_until_ts = 0
            WHERE request_id = ? AND status = 'queued'
            """,
            (f"not sent: the request was revoked ({reason})", request_id),
        )
    return done


# --- housekeeping ----------------------------------------------------------


PURGED = (
    "requests",
    "mails",
    "reservations",
    "addresses",
    "buckets",
    "used_challenges",
    "handled_events",
    "tokens",
    "synapse_token_rows",
    "lapsed_claims",
)


def purge_txn(
    txn: LoggingTransaction,
    now_ms: int,
    unfinished_ms: int,
    finished_ms: int,
    cooldown_ms: int,
    bucket_refill_ms: int,
) -> dict[str, int]:
    """Delete requests past retention, their mails, and stale reservations and buckets;
    how many rows of each kind (`PURGED`) went.

    Addresses that produced an account are kept (one account per address);
    others are forgotten with the unfinished requests.
    """
    counts: dict[str, int] = {}

    def delete(kind: str, sql: str, params: tuple[int, ...] = ()) -> None:
        txn.execute(sql, params)
        counts[kind] = txn.rowcount

    delete(
        "requests",
        """
        DELETE FROM email_gate_requests
        WHERE (status = 'registered' AND updated_ts < ?)
           OR (status <> 'registered' AND created_ts < ?
               AND (expires_ts IS NULL OR expires_ts < ?))
        """,
        (now_ms - finished_ms, now_ms - unfinished_ms, now_ms),
    )
    delete(
        "mails",
        """
        DELETE FROM email_gate_outbox WHERE kind <> 'notification' AND NOT EXISTS (
            SELECT 1 FROM email_gate_requests r WHERE r.id = email_gate_outbox.request_id
        )
        """,
    )
    delete("reservations", "DELETE FROM email_gate_reservations WHERE expires_ts < ?", (now_ms,))
    delete(
        "handled_events",
        "DELETE FROM email_gate_handled_events WHERE ts < ?",
        (now_ms - 86_400_000,),
    )
    delete(
        "addresses",
        "DELETE FROM email_gate_addresses WHERE accounts = 0 AND last_sent_ts < ?",
        (now_ms - max(unfinished_ms, cooldown_ms),),
    )
    # A bucket untouched for its whole refill time is full again: forget it.
    refilled_before = now_ms - bucket_refill_ms
    delete("buckets", "DELETE FROM email_gate_buckets WHERE updated_ts < ?", (refilled_before,))
    # An expired challenge is refused anyway: its id need not be remembered.
    delete(
        "used_challenges", "DELETE FROM email_gate_used_challenges WHERE expires_ts < ?", (now_ms,)
    )
    counts.update(tokens.purge_txn(txn, now_ms))
    return {kind: counts[kind] for kind in PURGED}


class _DryRun(Exception):
    """Raised inside the dry run's transaction so that it rolls back."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__("dry run")
        self.counts = counts


def _dry_purge_txn(txn: LoggingTransaction, *args: int) -> dict[str, int]:
    raise _DryRun(purge_txn(txn, *args))


# --- approval -----------------------------------------------------------------


@attrs.frozen
class PendingRequest:
    request_id: str
    localpart: str
    statement: str


def verify_address_txn(
    txn: LoggingTransaction, code: str, now_ms: int, notices: list[tuple[str, str]]
) -> PendingRequest | None:
    """The requester proved the address: the request waits for a moderator.

    `notices` are (outbox id, moderator address) pairs to queue. Returns the
    request id, or None for an unknown, used or expired code.
    """
    txn.execute(
        """
        SELECT id, localpart, statement FROM email_gate_requests
        WHERE verify_code = ? AND status = 'verifying' AND expires_ts > ?
        """,
        (code, now_ms),
    )
    row = txn.fetchone()
    if row is None:
        return None
    request_id = str(row[0])
    txn.execute(
        """
        UPDATE email_gate_requests SET status = 'pending', updated_ts = ?
        WHERE id = ? AND status = 'verifying'
        """,
        (now_ms, request_id),
    )
    if txn.rowcount != 1:
        return None
    for outbox_id, address in notices:
        queue_mail_txn(txn, outbox_id, request_id, "notice", address, now_ms)
    return PendingRequest(request_id=request_id, localpart=row[1], statement=row[2] or "")


@attrs.frozen
class Decision:
    request_id: str
    approve: bool
    actor: str
    message: str | None
    now_ms: int
    token: str
    token_lifetime_ms: int
    outbox_id: str


def decide_txn(txn: LoggingTransaction, d: Decision) -> str | None:
    """Approve (token + mail) or deny (polite mail) a pending request.

    Returns None when done, else why not: `not_found`, `not_pending`, `username_taken`.
    """
    txn.execute(
        "SELECT status, localpart, email_key FROM email_gate_requests WHERE id = ?",
        (d.request_id,),
    )
    row = txn.fetchone()
    if row is None:
        return "not_found"
    status, localpart, email_key = row
    if status != "pending":
        return "not_pending"
    if not d.approve:
        txn.execute(
            """
            UPDATE email_gate_requests SET status = 'denied', decided_by = ?,
                decision_message = ?, updated_ts = ?
            WHERE id = ?
            """,
            (d.actor, d.message, d.now_ms, d.request_id),
        )
        # The name stays held until the hold lapses, as for every request: freeing it
        # now would tell anyone watching the name that this address was mailed.
        queue_mail_txn(txn, d.outbox_id, d.request_id, "denied", None, d.now_ms)
        return None
    expires_ts = d.now_ms + d.token_lifetime_ms
    txn.execute(
        """
        INSERT INTO email_gate_reservations (localpart, request_id, email_key, expires_ts)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (localpart) DO UPDATE SET
            request_id = excluded.request_id, expires_ts = excluded.expires_ts
        WHERE email_gate_reservations.request_id = excluded.request_id
           OR email_gate_reservations.expires_ts <= ?
        """,
        (localpart, d.request_id, email_key, expires_ts, d.now_ms),
    )
    if txn.rowcount != 1:
        return "username_taken"
    grant_token_txn(txn, d.request_id, localpart, d.token, expires_ts, d.now_ms, d.actor)
    txn.execute(
        """
        UPDATE email_gate_requests SET decided_by = ?, decision_message = ? WHERE id = ?
        """,
        (d.actor, d.message, d.request_id),
    )
    queue_mail_txn(txn, d.outbox_id, d.request_id, "token", None, d.now_ms)
    return None


def mail_facts_txn(txn: LoggingTransaction, outbox_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Everything the queued mails need, from their outbox rows and their requests:
    one row per mail found, its outbox id first."""
    rows = select_in(
        txn,
        """
        SELECT o.id, o.kind, o.attempts, o.created_ts, o.recipient, r.id, r.email, r.localpart,
               r.token, r.expires_ts, r.verify_code, r.statement, r.decision_message, r.ip,
               r.lang
        FROM email_gate_outbox o JOIN email_gate_requests r ON r.id = o.request_id
        WHERE o.id
        """,
        outbox_ids,
    )
    return [tuple(row) for row in rows]


class RequestStore:
    """A request's life after the intake and the issue (storage/intake.py,
    storage/issue.py): verified, decided, registered, revoked, purged."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def verify_address(
        self, code: str, now_ms: int, notices: list[tuple[str, str]]
    ) -> PendingRequest | None:
        """The requester followed the link with `code`; see `verify_address_txn`."""
        return await self._runner.run(
            "email_gate_verify", verify_address_txn, code, now_ms, notices
        )

    async def orphans(self, older_than_ms: int, limit: int) -> list[tuple[str, str]]:
        """(id, client IP) of requests still `received` since before `older_than_ms`:
        their process died."""
        return await self._runner.run(
            "email_gate_orphans", received_requests_txn, older_than_ms, limit
        )

    async def decide(self, decision: Decision) -> str | None:
        """A moderator's approval or denial; None when done, else why not."""
        return await self._runner.run("email_gate_decide", decide_txn, decision)

    async def registered(
        self, localpart: str, user_id: str, now_ms: int
    ) -> tokens.Confirmed | None:
        """An account exists: confirm its token's use, link it to its request."""
        return await self._runner.run(
            "email_gate_account_made", registered_txn, localpart, user_id, now_ms
        )

    async def language(self, request_id: str) -> str | None:
        """The language the request was made in (None for a request gone)."""
        return await self._runner.run("email_gate_request_lang", request_lang_txn, request_id)

    async def token_details(self, token: str, now_ms: int) -> TokenDetails | None:
        return await self._runner.run("email_gate_token_details", token_details_txn, token, now_ms)

    async def revoke_banned(
        self, now_ms: int, reason_of: Callable[[OpenRequest], str | None]
    ) -> list[tuple[str, str]]:
        """Revoke the open requests `reason_of` gives a reason for; (id, reason) of each."""
        return await self._runner.run("email_gate_revoke", revoke_banned_txn, now_ms, reason_of)

    async def purge(
        self,
        now_ms: int,
        unfinished_ms: int,
        finished_ms: int,
        cooldown_ms: int,
        bucket_refill_ms: int,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """The retention purge (`purge_txn`): how many rows of each kind went. A dry
        run makes the same deletions in a transaction that is rolled back, so its
        counts are exactly what a purge at that moment deletes."""
        args = (now_ms, unfinished_ms, finished_ms, cooldown_ms, bucket_refill_ms)
        if not dry_run:
            return await self._runner.run("email_gate_purge", purge_txn, *args)
        try:
            await self._runner.run("email_gate_purge_dry_run", _dry_purge_txn, *args)
        except _DryRun as rolled_back:
            return rolled_back.counts
        raise AssertionError("the dry run's transaction must roll back")
