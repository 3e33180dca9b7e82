"""The tokens the module manages, their uses, and the one place that reads and
writes Synapse's `registration_tokens`.

The module counts the uses of its own tokens (mailed, granted by an approval,
invite tokens made through the admin API), in `email_gate_tokens` and
`email_gate_token_uses`. Synapse's row of such a token only lets the
registration-token stage and the validity endpoint through: `uses_allowed`
is NULL (so Synapse's `pending`, which an abandoned attempt leaves counted
until its interactive-auth session expires, never blocks anyone) and
`expiry_time` is the token's expiry, moved into the past once the token is
used up or revoked.

A use is claimed in one conditional write when /register asks for the
username (`claim_txn`), with a lease, and confirmed when the account exists
(`confirm_txn`). A claim whose account never appears lapses with its lease.

Rows of Synapse's table are never deleted while an interactive-auth session
may still finish with them: Synapse's `use_registration_token` fails (404)
when the row is gone, after the account was made. They are expired instead,
and deleted by the purge once every session that could hold them has expired
(`KEEP_SYNAPSE_ROW_MS`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage.runner import Runner, batch_txn, marks

EMAIL = "email"  # mailed for a request, or granted by a moderator's approval
INVITE = "invite"  # made by a moderator (admin API, CLI, room)
SYNAPSE = "synapse"  # made elsewhere (Synapse's admin API): Synapse counts its uses

# How long a claimed use is held for the registration that claimed it. Between
# the claim and the account Synapse runs the spam check, its username check and
# one insert: milliseconds. A registration that fails after its claim (the name
# was taken meanwhile, Synapse's own rate limit) frees the use when this runs out.
CLAIM_LEASE_MS = 60_000
# Synapse deletes interactive-auth sessions 48 hours after they started
# (AuthHandler.SESSION_EXPIRE_MS); an hour more for its hourly expiry run.
KEEP_SYNAPSE_ROW_MS = (48 + 1) * 3_600_000
# Lapsed claims are kept a day (for the log of what happened), then forgotten.
KEEP_LAPSED_CLAIM_MS = 86_400_000

# Why a token stopped working before it was used up or expired.
DELETED = "deleted"  # a moderator deleted it: hidden from the admin API
# Not a revocation: a moderator stopped the token for now, and may enable it again.
DISABLED = "disabled"

CLAIMED = "claimed"
NOT_OURS = "not_ours"
# Refusals of a claim.
USED = "used"  # every use was made
BUSY = "busy"  # the uses left are held by registrations under way
REVOKED = "revoked"
EXPIRED = "expired"
# DISABLED (above) is a refusal too.
USERNAME_MISSING = "username_missing"  # an invite token, and no username
USERNAME_INVALID = "username_invalid"
USERNAME_BANNED = "username_banned"
USERNAME_TAKEN = "username_taken"  # an account, or a registration under way, has it

MAX_LOCALPART = 255


# --- Synapse's registration_tokens ------------------------------------------------


def insert_synapse_rows(txn: LoggingTransaction, rows: Sequence[tuple[str, int | None]]) -> None:
    """(token, expiry_ts) rows for tokens the module counts: no use limit for Synapse."""
    batch_txn(
        txn,
        """
        INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time)
        VALUES (?, NULL, 0, 0, ?)
        """,
        rows,
    )


def expire_synapse_rows(txn: LoggingTransaction, tokens: Collection[str], now_ms: int) -> None:
    """The token stage and the validity endpoint answer invalid from now on."""
    # Synapse reads expiry_time 0 as "never": any past time above 0 will do.
    past = max(1, now_ms - 1)
    batch_txn(
        txn,
        """
        UPDATE registration_tokens SET expiry_time = ?
        WHERE token = ? AND (expiry_time IS NULL OR expiry_time > ?)
        """,
        [(past, token, past) for token in sorted(tokens)],
    )


def synapse_row_exists(txn: LoggingTransaction, token: str) -> bool:
    txn.execute("SELECT 1 FROM registration_tokens WHERE token = ?", (token,))
    return txn.fetchone() is not None


def delete_synapse_rows(txn: LoggingTransaction, tokens: Sequence[str]) -> list[str]:
    """Delete rows of tokens the module does not manage; the ones that existed."""
    deleted = []
    for token in tokens:
        txn.execute(
            """
            DELETE FROM registration_tokens WHERE token = ?
            AND NOT EXISTS (SELECT 1 FROM email_gate_tokens m WHERE m.token = ?)
            """,
            (token, token),
        )
        if txn.rowcount:
            deleted.append(token)
    return deleted


def foreign_rows_txn(txn: LoggingTransaction, token: str | None = None) -> list[dict[str, Any]]:
    """Synapse's rows of tokens made elsewhere (all, or the one named)."""
    where = "AND t.token = ?" if token is not None else ""
    txn.execute(
        f"""
        SELECT t.token, t.uses_allowed, t.pending, t.completed, t.expiry_time
        FROM registration_tokens t
        WHERE NOT EXISTS (SELECT 1 FROM email_gate_tokens m WHERE m.token = t.token) {where}
        ORDER BY t.expiry_time IS NULL, t.expiry_time, t.token
        """,  # noqa: S608 - a fixed clause
        (token,) if token is not None else (),
    )
    keys = ("token", "uses_allowed", "pending", "completed", "expiry_time")
    return [{**dict(zip(keys, row, strict=True)), "kind": SYNAPSE} for row in txn.fetchall()]


# --- the module's tokens ----------------------------------------------------------


@attrs.frozen
class NewToken:
    token: str
    kind: str
    uses_allowed: int | None
    expiry_ts: int | None
    created_ts: int
    created_by: str | None = None
    request_id: str | None = None
    localpart: str | None = None


def add_tokens_txn(txn: LoggingTransaction, tokens: Sequence[NewToken]) -> None:
    """Make tokens: the module's rows and Synapse's (which let the token stage through)."""
    if not tokens:
        return
    txn.execute_batch(
        """
        INSERT INTO email_gate_tokens (token, kind, request_id, localpart, uses_allowed,
            expiry_ts, created_by, created_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            (
                t.token,
                t.kind,
                t.request_id,
                t.localpart,
                t.uses_allowed,
                t.expiry_ts,
                t.created_by,
                t.created_ts,
            )
            for t in tokens
        ],
    )
    insert_synapse_rows(txn, [(t.token, t.expiry_ts) for t in tokens])
    # Synapse reads uses_allowed 0 as "unlimited"; for the module it means none.
    none_left = [t.token for t in tokens if t.uses_allowed == 0]
    if none_left:
        expire_synapse_rows(txn, none_left, min(t.created_ts for t in tokens))


def create_invite_txn(txn: LoggingTransaction, new: NewToken) -> bool:
    """False when a token with this text exists already (the module's or Synapse's)."""
    txn.execute("SELECT 1 FROM email_gate_tokens WHERE token = ?", (new.token,))
    if txn.fetchone() is not None or synapse_row_exists(txn, new.token):
        return False
    add_tokens_txn(txn, [new])
    return True


def revoke_txn(
    txn: LoggingTransaction, tokens: Collection[str], reason: str, now_ms: int
) -> list[str]:
    """Stop tokens that still work (not revoked, not used up); the ones stopped.

    A registration that already claimed a use may still finish (its claim is
    confirmed); no new use can be claimed.
    """
    stopped = []
    for token in sorted(tokens):
        txn.execute(
            """
            UPDATE email_gate_tokens SET revoked_ts = ?, revoked_reason = ?
            WHERE token = ? AND revoked_ts IS NULL AND (uses_allowed IS NULL OR uses_allowed >
                (SELECT COUNT(*) FROM email_gate_token_uses u
                 WHERE u.token = email_gate_tokens.token AND u.state = 'used'))
            """,
            (now_ms, reason, token),
        )
        if txn.rowcount:
            stopped.append(token)
    expire_synapse_rows(txn, stopped, now_ms)
    return stopped


def delete_txn(txn: LoggingTransaction, tokens: Sequence[str], now_ms: int) -> list[str]:
    """Delete tokens: the module's stop working and are hidden (their account links
    stay), other rows of Synapse's table are deleted. The ones that existed."""
    deleted = []
    for token in tokens:
        txn.execute(
            """
            UPDATE email_gate_tokens SET revoked_ts = COALESCE(revoked_ts, ?), revoked_reason = ?
            WHERE token = ? AND (revoked_reason IS NULL OR revoked_reason <> ?)
            """,
            (now_ms, DELETED, token, DELETED),
        )
        if txn.rowcount:
            deleted.append(token)
    expire_synapse_rows(txn, deleted, now_ms)
    return deleted + delete_synapse_rows(txn, [t for t in tokens if t not in deleted])


def delete_all_txn(txn: LoggingTransaction, now_ms: int) -> int:
    txn.execute(
        """
        SELECT token FROM email_gate_tokens WHERE revoked_reason IS NULL OR revoked_reason <> ?
        """,
        (DELETED,),
    )
    ours = [str(row[0]) for row in txn.fetchall()]
    txn.execute(
        """
        SELECT token FROM registration_tokens t
        WHERE NOT EXISTS (SELECT 1 FROM email_gate_tokens m WHERE m.token = t.token)
        """
    )
    foreign = [str(row[0]) for row in txn.fetchall()]
    return len(delete_txn(txn, ours + foreign, now_ms))


# --- claims and uses --------------------------------------------------------------


@attrs.frozen
class ClaimResult:
    """What a claim came to: CLAIMED, NOT_OURS, or a refusal (USED, BUSY, ...)."""

    outcome: str
    localpart: str | None = None
    kind: str | None = None
    retry_after_ms: int = 0


def claim_txn(
    txn: LoggingTransaction,
    token: str,
    asked: str | None,
    ip: str | None,
    via: str,
    now_ms: int,
    username_banned: Callable[[str], bool],
    lease_ms: int = CLAIM_LEASE_MS,
) -> ClaimResult:
    """Claim one use of a token of ours for the localpart it makes.

    Emailed tokens make the localpart they are bound to; invite tokens the
    username the client asked for (`asked`, lowercased). The use is claimed only
    if the token is not revoked or expired, its confirmed uses and live claims
    leave one free, and no live claim of another token holds the localpart.

    Across processes: every claim of a token updates that token's row, so on
    PostgreSQL two concurrent claims of one token conflict and the later one is
    retried (REPEATABLE READ), seeing the first; SQLite has one writer.
    """
    txn.execute(
        """
        SELECT kind, localpart, uses_allowed, expiry_ts, revoked_ts, revoked_reason
        FROM email_gate_tokens WHERE token = ?
        """,
        (token,),
    )
    row = txn.fetchone()
    if row is None:
        return ClaimResult(NOT_OURS)
    kind, bound, uses_allowed, expiry_ts, revoked_ts, revoked_reason = row
    if kind == EMAIL:
        localpart = str(bound)
    else:
        localpart = (asked or "").strip().lower()
        if not localpart:
            return ClaimResult(USERNAME_MISSING, None, kind)
        if len(localpart) > MAX_LOCALPART or not localpart.isascii():
            return ClaimResult(USERNAME_INVALID, None, kind)

    def refused(outcome: str, retry_after_ms: int = 0) -> ClaimResult:
        return ClaimResult(outcome, localpart, kind, retry_after_ms)

    if username_banned(localpart):
        return refused(USERNAME_BANNED)
    if revoked_ts is not None:
        return refused(DISABLED if revoked_reason == DISABLED else REVOKED)
    if expiry_ts is not None and expiry_ts <= now_ms:
        return refused(EXPIRED)
    if kind != EMAIL and username_reserved_txn(txn, localpart, now_ms):
        # The name is held for a mailed request: an invite must not take it.
        return refused(USERNAME_TAKEN)
    txn.execute(
        """
        UPDATE email_gate_tokens SET claim_seq = claim_seq + 1
        WHERE token = ? AND revoked_ts IS NULL AND (expiry_ts IS NULL OR expiry_ts > ?)
          AND (uses_allowed IS NULL OR uses_allowed >
              (SELECT COUNT(*) FROM email_gate_token_uses u
               WHERE u.token = ? AND (u.state = 'used'
                   OR (u.state = 'claimed' AND u.lease_until_ts > ? AND u.localpart <> ?))))
        """,
        (token, now_ms, token, now_ms, localpart),
    )
    if txn.rowcount != 1:
        used, held, free_at = _usage(txn, token, localpart, now_ms)
        if uses_allowed is not None and used >= uses_allowed:
            return refused(USED)
        return refused(BUSY, max(1000, free_at - now_ms) if held else 1000)
    txn.execute(
        """
        INSERT INTO email_gate_token_uses (localpart, token, state, claimed_ts, lease_until_ts,
            ip, via)
        VALUES (?, ?, 'claimed', ?, ?, ?, ?)
        ON CONFLICT (localpart) DO UPDATE SET token = excluded.token,
            claimed_ts = excluded.claimed_ts, lease_until_ts = excluded.lease_until_ts,
            ip = excluded.ip, via = excluded.via
        WHERE email_gate_token_uses.state = 'claimed'
          AND (email_gate_token_uses.token = excluded.token
               OR email_gate_token_uses.lease_until_ts <= ?)
        """,
        (localpart, token, now_ms, now_ms + lease_ms, ip, via, now_ms),
    )
    if txn.rowcount != 1:
        return refused(USERNAME_TAKEN)
    return ClaimResult(CLAIMED, localpart, kind)


def username_reserved_txn(txn: LoggingTransaction, localpart: str, now_ms: int) -> bool:
    """Whether a request holds this username now (its reservation has not lapsed)."""
    txn.execute(
        "SELECT 1 FROM email_gate_reservations WHERE localpart = ? AND expires_ts > ?",
        (localpart, now_ms),
    )
    return txn.fetchone() is not None


def _usage(
    txn: LoggingTransaction, token: str, localpart: str, now_ms: int
) -> tuple[int, int, int]:
    """(confirmed uses, live claims of other localparts, when the first of those lapses)."""
    txn.execute(
        """
        SELECT state, lease_until_ts FROM email_gate_token_uses
        WHERE token = ? AND (state = 'used' OR (lease_until_ts > ? AND localpart <> ?))
        """,
        (token, now_ms, localpart),
    )
    rows = txn.fetchall()
    leases = [int(lease) for state, lease in rows if state != "used"]
    return len(rows) - len(leases), len(leases), min(leases, default=now_ms)


@attrs.frozen
class Confirmed:
    token: str
    kind: str
    request_id: str | None
    created_by: str | None
    used_up: bool


def confirm_txn(
    txn: LoggingTransaction, localpart: str, user_id: str, now_ms: int
) -> Confirmed | None:
    """The account for a claimed localpart exists: its use is made. None when no
    live claim of a token of ours has that localpart (an account made another way,
    after an attempt with a token lapsed)."""
    txn.execute(
        """
        UPDATE email_gate_token_uses SET state = 'used', user_id = ?, used_ts = ?
        WHERE localpart = ? AND state = 'claimed' AND lease_until_ts > ?
        """,
        (user_id, now_ms, localpart, now_ms),
    )
    if txn.rowcount != 1:
        return None
    # Like a claim, a confirmation writes the token's row: two confirmations of one
    # token at once then conflict (PostgreSQL retries the later one), so the one
    # that makes the last use sees the others and expires Synapse's row.
    txn.execute(
        """
        UPDATE email_gate_tokens SET claim_seq = claim_seq + 1
        WHERE token = (SELECT token FROM email_gate_token_uses WHERE localpart = ?)
        """,
        (localpart,),
    )
    txn.execute(
        """
        SELECT t.token, t.kind, t.request_id, t.created_by, t.uses_allowed,
            (SELECT COUNT(*) FROM email_gate_token_uses u
             WHERE u.token = t.token AND u.state = 'used')
        FROM email_gate_tokens t JOIN email_gate_token_uses c ON c.token = t.token
        WHERE c.localpart = ?
        """,
        (localpart,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    token, kind, request_id, created_by, uses_allowed, used = row
    used_up = uses_allowed is not None and used >= uses_allowed
    if used_up:
        expire_synapse_rows(txn, [token], now_ms)
    return Confirmed(str(token), str(kind), request_id, created_by, used_up)


# --- what moderators change ----------------------------------------------------------


class Keep:
    """The value of a field an edit leaves as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


@attrs.frozen
class TokenEdit:
    """A moderator's change to an invite token: KEEP leaves a field as it is;
    `disabled` True disables, False enables, None leaves it."""

    uses_allowed: int | Keep | None = KEEP
    expiry_ts: int | Keep | None = KEEP
    disabled: bool | None = None


# What an edit came to.
EDITED = "edited"
NOT_FOUND = "not_found"
NOT_INVITE = "not_invite"  # a mailed token: bound to its request, never edited
FOREIGN = "foreign"  # a token made elsewhere: Synapse's to count and edit
BELOW_USED = "below_used"  # uses_allowed lower than the uses already made
ADMIN_ONLY = "admin_only"  # unlimited or never-expiring, by someone who is not an admin


@attrs.frozen
class EditResult:
    outcome: str
    used: int = 0


def edit_txn(
    txn: LoggingTransaction, token: str, edit: TokenEdit, may_be_unbounded: bool, now_ms: int
) -> EditResult:
    """Change an invite token's uses allowed, expiry, or whether it is disabled.

    The module's row is the truth; Synapse's row follows it (`_follow_synapse_row`).
    `uses_allowed` below the uses already made is refused (a live claim may still
    make its account: edits never take a use back). Without `may_be_unbounded`
    (a server admin), an edit may not make a token unlimited or never-expiring,
    nor enable one that is. The update writes the token's row, so it conflicts
    with a claim of the same token running at the same time (PostgreSQL retries
    the later one), as claims conflict with each other.
    """
    txn.execute(
        """
        SELECT kind, uses_allowed, expiry_ts, revoked_ts, revoked_reason
        FROM email_gate_tokens WHERE token = ?
        """,
        (token,),
    )
    row = txn.fetchone()
    if row is None or row[4] == DELETED:
        return EditResult(FOREIGN if row is None and synapse_row_exists(txn, token) else NOT_FOUND)
    kind, uses_allowed, expiry_ts, revoked_ts, revoked_reason = row
    if kind != INVITE:
        return EditResult(NOT_INVITE)
    if revoked_ts is not None and revoked_reason != DISABLED:
        return EditResult(NOT_FOUND)
    used = _used(txn, token)
    uses = uses_allowed if isinstance(edit.uses_allowed, Keep) else edit.uses_allowed
    expiry = expiry_ts if isinstance(edit.expiry_ts, Keep) else edit.expiry_ts
    disabled = revoked_ts is not None if edit.disabled is None else edit.disabled
    # Only a new number is held against the uses made: a registration that claimed
    # before a lowering may have made one more since.
    if not isinstance(edit.uses_allowed, Keep) and uses is not None and uses < used:
        return EditResult(BELOW_USED, used)
    if not may_be_unbounded and not disabled:
        enabling = edit.disabled is False and revoked_ts is not None
        if uses is None and (enabling or not isinstance(edit.uses_allowed, Keep)):
            return EditResult(ADMIN_ONLY)
        if expiry is None and (enabling or not isinstance(edit.expiry_ts, Keep)):
            return EditResult(ADMIN_ONLY)
    revoked: tuple[int | None, str | None] = (None, None)
    if disabled:
        revoked = (revoked_ts if revoked_ts is not None else now_ms, DISABLED)
    txn.execute(
        """
        UPDATE email_gate_tokens SET uses_allowed = ?, expiry_ts = ?, revoked_ts = ?,
            revoked_reason = ?, claim_seq = claim_seq + 1
        WHERE token = ?
        """,
        (uses, expiry, *revoked, token),
    )
    works = not disabled and (uses is None or used < uses)
    _follow_synapse_row(txn, token, expiry if works else now_ms - 1, now_ms)
    return EditResult(EDITED, used)


def _used(txn: LoggingTransaction, token: str) -> int:
    txn.execute(
        "SELECT COUNT(*) FROM email_gate_token_uses WHERE token = ? AND state = 'used'", (token,)
    )
    row = txn.fetchone()
    return int(row[0]) if row else 0


def _follow_synapse_row(
    txn: LoggingTransaction, token: str, expiry_ts: int | None, now_ms: int
) -> None:
    """Synapse's row says what the module's says: open until `expiry_ts` (None:
    never), or, for a token that does not work now, closed since a moment ago."""
    if expiry_ts is not None and expiry_ts <= now_ms:
        expire_synapse_rows(txn, [token], now_ms)
        return
    txn.execute(
        "UPDATE registration_tokens SET expiry_time = ? WHERE token = ?", (expiry_ts, token)
    )
    if txn.rowcount == 0:  # the purge deleted it while the token did not work
        insert_synapse_rows(txn, [(token, expiry_ts)])


# --- what moderators see ------------------------------------------------------------

_COLUMNS = (
    "token, kind, request_id, localpart, uses_allowed, expiry_ts, created_by, created_ts, "
    "revoked_ts, revoked_reason"
)
_KEYS = [c.strip() for c in _COLUMNS.split(",")]
_ACCOUNT_KEYS = ("user_id", "localpart", "registered_ts", "ip", "via")


def module_tokens_txn(
    txn: LoggingTransaction, now_ms: int, token: str | None = None
) -> list[dict[str, Any]]:
    """The module's tokens (all not deleted, or the one named), with their counts
    and the accounts they made."""
    where = "token = ?" if token is not None else "(revoked_reason IS NULL OR revoked_reason <> ?)"
    txn.execute(
        f"SELECT {_COLUMNS} FROM email_gate_tokens WHERE {where}"  # noqa: S608 - fixed
        " ORDER BY expiry_ts IS NULL, expiry_ts, token",
        (token if token is not None else DELETED,),
    )
    tokens = [dict(zip(_KEYS, row, strict=True)) for row in txn.fetchall()]
    if not tokens:
        return []
    accounts = _accounts(txn, [t["token"] for t in tokens], now_ms)
    for t in tokens:
        made, held = accounts.get(t["token"], ([], 0))
        t["accounts"] = made
        t["completed"] = len(made)
        t["pending"] = held
    return tokens


def _accounts(
    txn: LoggingTransaction, tokens: Sequence[str], now_ms: int
) -> dict[str, tuple[list[dict[str, Any]], int]]:
    """token -> (accounts made, oldest first; live claims)."""
    found: dict[str, tuple[list[dict[str, Any]], int]] = {}
    for start in range(0, len(tokens), 500):
        chunk = sorted(tokens[start : start + 500])
        txn.execute(
            f"""
            SELECT token, state, lease_until_ts, user_id, localpart, used_ts, ip, via
            FROM email_gate_token_uses WHERE token IN ({marks(chunk)})
            ORDER BY used_ts, localpart
            """,  # noqa: S608 - placeholders only
            chunk,
        )
        for token, state, lease, user_id, localpart, used_ts, ip, via in txn.fetchall():
            made, held = found.get(token, ([], 0))
            if state == "used":
                account = (user_id, localpart, used_ts, ip, via)
                made.append(dict(zip(_ACCOUNT_KEYS, account, strict=True)))
            elif lease > now_ms:
                held += 1
            found[token] = (made, held)
    return found


def account_txn(txn: LoggingTransaction, user_id: str) -> dict[str, Any] | None:
    """How an account came in: its use and the token's kind, creator and request."""
    txn.execute(
        """
        SELECT u.user_id, u.localpart, u.used_ts, u.ip, u.via, u.token, t.kind, t.created_by,
            t.request_id
        FROM email_gate_token_uses u JOIN email_gate_tokens t ON t.token = u.token
        WHERE u.user_id = ? AND u.state = 'used'
        """,
        (user_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    keys = (*_ACCOUNT_KEYS, "token", "token_kind", "token_created_by", "request_id")
    return dict(zip(keys, row, strict=True))


def tokens_created_by_txn(txn: LoggingTransaction, user_id: str) -> list[str]:
    txn.execute(
        # Invite tokens only: a token granted by an approval went to one person's mail.
        "SELECT token FROM email_gate_tokens WHERE created_by = ? AND kind = ?"
        " ORDER BY created_ts, token",
        (user_id, INVITE),
    )
    return [str(row[0]) for row in txn.fetchall()]


def accounts_made_with_txn(
    txn: LoggingTransaction, tokens: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """token -> the accounts it made."""
    return {token: made for token, (made, _) in _accounts(txn, tokens, 0).items() if made}


def all_tokens_txn(
    txn: LoggingTransaction, now_ms: int, token: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the module's tokens, Synapse's rows of other tokens): all, or the one named."""
    ours = module_tokens_txn(txn, now_ms, token)
    foreign = [] if token is not None and ours else foreign_rows_txn(txn, token)
    return ours, foreign


def account_links_txn(
    txn: LoggingTransaction, user_id: str
) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]]]:
    """(how the account came in, or None; invite token it made -> the accounts those made)."""
    link = account_txn(txn, user_id)
    created = tokens_created_by_txn(txn, user_id)
    made = accounts_made_with_txn(txn, created)
    return link, {token: made.get(token, []) for token in created}


# --- the landing page -----------------------------------------------------------------


@attrs.frozen
class InviteLanding:
    """What the landing page shows for an invite token that can still make an account."""

    expiry_ts: int | None

    @property
    def usable(self) -> bool:
        return True  # only usable invite tokens get one


def invite_landing_txn(txn: LoggingTransaction, token: str, now_ms: int) -> InviteLanding | None:
    """None for anything but a usable invite token: an unknown token and one used up,
    expired, revoked or disabled look the same (as to Synapse's validity endpoint)."""
    txn.execute(
        "SELECT expiry_ts FROM email_gate_tokens WHERE token = ? AND kind = ?", (token, INVITE)
    )
    row = txn.fetchone()
    if row is None or not usable_txn(txn, token, now_ms):
        return None
    return InviteLanding(expiry_ts=row[0])


def usable_txn(txn: LoggingTransaction, token: str, now_ms: int) -> bool:
    """Whether a token of ours can still make an account (a live claim may lapse, so
    only made uses count here)."""
    txn.execute(
        """
        SELECT 1 FROM email_gate_tokens t WHERE t.token = ? AND t.revoked_ts IS NULL
          AND (t.expiry_ts IS NULL OR t.expiry_ts > ?)
          AND (t.uses_allowed IS NULL OR t.uses_allowed >
              (SELECT COUNT(*) FROM email_gate_token_uses u
               WHERE u.token = t.token AND u.state = 'used'))
        """,
        (token, now_ms),
    )
    return txn.fetchone() is not None


# --- housekeeping ---------------------------------------------------------------------


def purge_txn(txn: LoggingTransaction, now_ms: int) -> dict[str, int]:
    """Forget what no registration can need any more; how many rows of each kind went.

    - Synapse's rows of our tokens that stopped working longer ago than any
      interactive-auth session lives (expiry_time is moved to the moment a token
      is used up or revoked);
    - the module's rows of those tokens, unless they made an account (the link);
    - lapsed claims.
    """
    dead_before = now_ms - KEEP_SYNAPSE_ROW_MS
    # A disabled token is kept until its own expiry: it may be enabled again.
    txn.execute(
        """
        DELETE FROM registration_tokens WHERE expiry_time IS NOT NULL AND expiry_time < ?
          AND EXISTS (SELECT 1 FROM email_gate_tokens m WHERE m.token = registration_tokens.token
                      AND (m.revoked_reason IS NULL OR m.revoked_reason <> ?
                           OR m.expiry_ts < ?))
        """,
        (dead_before, DISABLED, dead_before),
    )
    counts = {"synapse_token_rows": txn.rowcount}
    txn.execute(
        """
        DELETE FROM email_gate_tokens
        WHERE ((revoked_ts < ? AND revoked_reason <> ?) OR expiry_ts < ?)
          AND NOT EXISTS (SELECT 1 FROM registration_tokens r
                          WHERE r.token = email_gate_tokens.token)
          AND NOT EXISTS (SELECT 1 FROM email_gate_token_uses u
                          WHERE u.token = email_gate_tokens.token AND u.state = 'used')
        """,
        (dead_before, DISABLED, dead_before),
    )
    counts["tokens"] = txn.rowcount
    txn.execute(
        "DELETE FROM email_gate_token_uses WHERE state = 'claimed' AND lease_until_ts < ?",
        (now_ms - KEEP_LAPSED_CLAIM_MS,),
    )
    counts["lapsed_claims"] = txn.rowcount
    return counts


class TokenStore:
    """The module's tokens and their uses; Synapse's rows of every token."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def claim(
        self,
        token: str,
        asked: str | None,
        ip: str | None,
        via: str,
        now_ms: int,
        username_banned: Callable[[str], bool],
    ) -> ClaimResult:
        """Claim one use of `token` for the localpart it makes (see `claim_txn`)."""
        return await self._runner.run(
            "email_gate_claim_use", claim_txn, token, asked, ip, via, now_ms, username_banned
        )

    async def create_invite(self, new: NewToken) -> bool:
        """False when a token with this text exists already."""
        return await self._runner.run("email_gate_create_token", create_invite_txn, new)

    async def delete(self, tokens: Sequence[str], now_ms: int) -> list[str]:
        """Delete tokens (see `delete_txn`); the ones that existed."""
        return await self._runner.run("email_gate_delete_tokens", delete_txn, tokens, now_ms)

    async def delete_all(self, now_ms: int) -> int:
        return await self._runner.run("email_gate_delete_all_tokens", delete_all_txn, now_ms)

    async def listing(self, now_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(the module's tokens not deleted, Synapse's rows of other tokens)."""
        return await self._runner.run("email_gate_list_tokens", all_tokens_txn, now_ms)

    async def lookup(
        self, token: str, now_ms: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`listing` for the one token named."""
        return await self._runner.run("email_gate_get_token", all_tokens_txn, now_ms, token)

    async def account(
        self, user_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]]]:
        """How an account came in, and the accounts the invite tokens it made brought."""
        return await self._runner.run("email_gate_account", account_links_txn, user_id)

    async def edit(
        self, token: str, edit: TokenEdit, may_be_unbounded: bool, now_ms: int
    ) -> EditResult:
        """A moderator's change to an invite token (see `edit_txn`)."""
        return await self._runner.run(
            "email_gate_edit_token", edit_txn, token, edit, may_be_unbounded, now_ms
        )

    async def invite_landing(self, token: str, now_ms: int) -> InviteLanding | None:
        """What an invite link's page shows; None unless the token can make an account."""
        return await self._runner.run(
            "email_gate_invite_landing", invite_landing_txn, token, now_ms
        )

    async def username_reserved(self, localpart: str, now_ms: int) -> bool:
        return await self._runner.run(
            "email_gate_username_reserved", username_reserved_txn, localpart, now_ms
        )
