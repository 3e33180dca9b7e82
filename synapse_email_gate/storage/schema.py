"""The module's own tables, created at start-up on SQLite and PostgreSQL.

Several processes (main + workers) may start at once. On PostgreSQL concurrent
`CREATE TABLE IF NOT EXISTS` can fail, so creation runs under a transaction-scoped
advisory lock; SQLite serialises writers by itself.
"""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import PostgresEngine

from synapse_email_gate.storage.runner import Runner

SCHEMA_VERSION = 2

# Statements that bring tables created at version N-1 to version N, run in order
# under the lock. `_TABLES` always describes the newest version, for new installs.
# Add a step here (and bump SCHEMA_VERSION) whenever a table above changes.
MIGRATIONS: dict[int, list[str]] = {
    # Version 2: the module counts the uses of its tokens itself (storage/tokens.py).
    # Tables are made by `_TABLES` above; here the emailed tokens still waiting
    # for their account move under the module's count, and Synapse stops
    # counting them (a stale `pending` no longer blocks them).
    2: [
        """
        INSERT INTO email_gate_tokens (token, kind, request_id, localpart, uses_allowed,
            expiry_ts, created_by, created_ts)
        SELECT r.token, 'email', r.id, r.localpart, 1, r.expires_ts, r.decided_by, r.updated_ts
        FROM email_gate_requests r JOIN registration_tokens t ON t.token = r.token
        WHERE r.status IN ('issued', 'registering') AND t.completed = 0
        ON CONFLICT (token) DO NOTHING
        """,
        """
        UPDATE registration_tokens SET uses_allowed = NULL
        WHERE token IN (SELECT token FROM email_gate_tokens)
        """,
        "UPDATE email_gate_requests SET status = 'issued' WHERE status = 'registering'",
    ],
}

# An arbitrary constant naming this module's advisory lock ("EGATE" in ASCII).
_ADVISORY_LOCK_ID = 0x4547415445

_TABLES = [
    """
    CREATE TABLE IF NOT EXISTS email_gate_schema_version (
        version INTEGER NOT NULL
    )
    """,
    # One row per request made on the page or the API.
    # status: received -> issued | suppressed -> registered; with approval:
    # received -> verifying -> pending -> issued | denied; an open request a ban
    # matches -> revoked (docs/internals.md)
    """
    CREATE TABLE IF NOT EXISTS email_gate_requests (
        id TEXT PRIMARY KEY,
        created_ts BIGINT NOT NULL,
        updated_ts BIGINT NOT NULL,
        localpart TEXT NOT NULL,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL,
        ip TEXT NOT NULL,
        lang TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        token TEXT UNIQUE,
        expires_ts BIGINT,
        user_id TEXT,
        statement TEXT,
        verify_code TEXT UNIQUE,
        decided_by TEXT,
        decision_message TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS email_gate_requests_created ON email_gate_requests (created_ts)",
    """CREATE INDEX IF NOT EXISTS email_gate_requests_status
       ON email_gate_requests (status, created_ts)""",
    """CREATE INDEX IF NOT EXISTS email_gate_requests_email
       ON email_gate_requests (email_key, created_ts)""",
    # What the module knows about an address: when it was last mailed a token
    # and how many accounts it produced.
    """
    CREATE TABLE IF NOT EXISTS email_gate_addresses (
        email_key TEXT PRIMARY KEY,
        last_sent_ts BIGINT NOT NULL,
        accounts INTEGER NOT NULL
    )
    """,
    # A username promised to one request until its token expires.
    """
    CREATE TABLE IF NOT EXISTS email_gate_reservations (
        localpart TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        email_key TEXT NOT NULL,
        expires_ts BIGINT NOT NULL
    )
    """,
    # Outgoing mail, written in the same transaction as the request it serves.
    """
    CREATE TABLE IF NOT EXISTS email_gate_outbox (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        recipient TEXT,
        status TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_ts BIGINT NOT NULL,
        lease_until_ts BIGINT NOT NULL,
        last_error TEXT,
        sent_ts BIGINT
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_outbox_due
       ON email_gate_outbox (status, next_attempt_ts)""",
    # Small shared counters, e.g. the policy generation every process follows.
    """
    CREATE TABLE IF NOT EXISTS email_gate_state (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )
    """,
    # Bans added by moderators through the admin API, the CLI or the room.
    """
    CREATE TABLE IF NOT EXISTS email_gate_bans (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        match TEXT NOT NULL,
        reason TEXT,
        expires_ts BIGINT,
        created_by TEXT NOT NULL,
        created_ts BIGINT NOT NULL
    )
    """,
    # Moderators added at run time (on top of the `moderators` config key).
    """
    CREATE TABLE IF NOT EXISTS email_gate_moderators (
        entry TEXT PRIMARY KEY,
        added_by TEXT NOT NULL,
        added_ts BIGINT NOT NULL
    )
    """,
    # Every moderator action: who, what, when.
    """
    CREATE TABLE IF NOT EXISTS email_gate_audit (
        id TEXT PRIMARY KEY,
        ts BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS email_gate_audit_ts ON email_gate_audit (ts)",
    # Room events already handled, so each command is answered exactly once.
    """
    CREATE TABLE IF NOT EXISTS email_gate_handled_events (
        event_id TEXT PRIMARY KEY,
        ts BIGINT NOT NULL
    )
    """,
    # Rate-limit buckets shared by every process (`tokens`: the credit left).
    """
    CREATE TABLE IF NOT EXISTS email_gate_buckets (
        bucket TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated_ts BIGINT NOT NULL
    )
    """,
    # Proof-of-work challenges already solved once (rules/proof_of_work.py): kept until they expire.
    """
    CREATE TABLE IF NOT EXISTS email_gate_used_challenges (
        id TEXT PRIMARY KEY,
        used_ts BIGINT NOT NULL,
        expires_ts BIGINT NOT NULL
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_used_challenges_expires
       ON email_gate_used_challenges (expires_ts)""",
    """CREATE INDEX IF NOT EXISTS email_gate_used_challenges_used
       ON email_gate_used_challenges (used_ts)""",
    # Every token the module manages (mailed, approved, invite): it counts their
    # uses here; Synapse's row has uses_allowed NULL (storage/tokens.py).
    """
    CREATE TABLE IF NOT EXISTS email_gate_tokens (
        token TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        request_id TEXT,
        localpart TEXT,
        uses_allowed INTEGER,
        expiry_ts BIGINT,
        created_by TEXT,
        created_ts BIGINT NOT NULL,
        revoked_ts BIGINT,
        revoked_reason TEXT,
        claim_seq BIGINT NOT NULL DEFAULT 0
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_tokens_request
       ON email_gate_tokens (request_id)""",
    # One row per use of a token: claimed (with a lease) when /register asks for
    # the username, used once the account exists. One per localpart: an account
    # name is made once.
    """
    CREATE TABLE IF NOT EXISTS email_gate_token_uses (
        localpart TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        state TEXT NOT NULL,
        claimed_ts BIGINT NOT NULL,
        lease_until_ts BIGINT NOT NULL,
        ip TEXT,
        via TEXT,
        user_id TEXT,
        used_ts BIGINT
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_token_uses_token
       ON email_gate_token_uses (token, state)""",
    """CREATE INDEX IF NOT EXISTS email_gate_token_uses_user
       ON email_gate_token_uses (user_id)""",
    # Per policy_rooms entry: where it leads and whether the bot could join
    # (storage/policy_rooms.py); written by the background-tasks process only.
    """
    CREATE TABLE IF NOT EXISTS email_gate_policy_rooms (
        entry TEXT PRIMARY KEY,
        room_id TEXT,
        joined BOOLEAN NOT NULL,
        problem TEXT,
        checked_ts BIGINT NOT NULL
    )
    """,
    # Probation lifted early by a moderator (storage/accounts.py).
    """
    CREATE TABLE IF NOT EXISTS email_gate_probation_lifts (
        user_id TEXT PRIMARY KEY,
        lifted_ts BIGINT NOT NULL,
        lifted_by TEXT NOT NULL
    )
    """,
    # Who registered lately: probation and mass action read accounts by time.
    """CREATE INDEX IF NOT EXISTS email_gate_token_uses_used
       ON email_gate_token_uses (used_ts)""",
    # Moderators' notifications (storage/notifications.py): events from any process,
    # delivered by the background-tasks one; per channel NULL = due, 0 = not for it.
    """
    CREATE TABLE IF NOT EXISTS email_gate_notifications (
        id TEXT PRIMARY KEY,
        ts BIGINT NOT NULL,
        kind TEXT NOT NULL,
        user_id TEXT NOT NULL,
        email TEXT,
        detail TEXT,
        mailed_ts BIGINT,
        posted_ts BIGINT
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_notifications_ts
       ON email_gate_notifications (ts)""",
    # What each channel still has to send, read every few seconds.
    """CREATE INDEX IF NOT EXISTS email_gate_notifications_unmailed
       ON email_gate_notifications (ts) WHERE mailed_ts IS NULL""",
    """CREATE INDEX IF NOT EXISTS email_gate_notifications_unposted
       ON email_gate_notifications (ts) WHERE posted_ts IS NULL""",
    # Each notification message sent (room) or queued (mail, as outbox kind 'notification').
    """
    CREATE TABLE IF NOT EXISTS email_gate_notification_messages (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        ts BIGINT NOT NULL,
        events INTEGER NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL
    )
    """,
    """CREATE INDEX IF NOT EXISTS email_gate_notification_messages_ts
       ON email_gate_notification_messages (channel, ts)""",
    # Refusals of the request path, per UTC hour and errcode, added by every
    # process from its memory (storage/stats.py): the picture on the admin page.
    """
    CREATE TABLE IF NOT EXISTS email_gate_refusals (
        hour_ts BIGINT NOT NULL,
        reason TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (hour_ts, reason)
    )
    """,
    # The picture counts tokens and accounts per hour through these.
    """CREATE INDEX IF NOT EXISTS email_gate_tokens_created
       ON email_gate_tokens (created_ts)""",
    """CREATE INDEX IF NOT EXISTS email_gate_token_uses_used
       ON email_gate_token_uses (used_ts, state)""",
    # Secrets made on first use and shared by every process (the challenge MAC key).
    """
    CREATE TABLE IF NOT EXISTS email_gate_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # The surge switch in force on every process (storage/surge.py): one row, `surge`.
    """
    CREATE TABLE IF NOT EXISTS email_gate_surge (
        name TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        cause TEXT NOT NULL,
        scope TEXT NOT NULL,
        level INTEGER NOT NULL,
        since_ts BIGINT NOT NULL,
        until_ts BIGINT NOT NULL,
        quiet_until_ts BIGINT NOT NULL,
        changed_by TEXT NOT NULL
    )
    """,
]


def create_schema(txn: LoggingTransaction) -> None:
    if isinstance(txn.database_engine, PostgresEngine):
        # Synapse runs transactions at REPEATABLE READ, whose snapshot is taken by
        # the first statement, i.e. before the lock is granted: a process that waited
        # would not see what the holder committed (a second version row, a migration
        # run twice). At READ COMMITTED each statement after the lock sees it.
        txn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_ADVISORY_LOCK_ID,))
    for statement in _TABLES:
        txn.execute(statement)
    txn.execute("SELECT version FROM email_gate_schema_version")
    row = txn.fetchone()
    if row is None:
        txn.execute("INSERT INTO email_gate_schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif row[0] > SCHEMA_VERSION:
        raise RuntimeError(
            f"email_gate tables are at version {row[0]}, newer than this module "
            f"({SCHEMA_VERSION}); upgrade synapse-email-gate"
        )
    else:
        for version in range(row[0] + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                txn.execute(statement)
        txn.execute("UPDATE email_gate_schema_version SET version = ?", (SCHEMA_VERSION,))


class SchemaStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def create(self) -> None:
        """Create or upgrade the module's tables (every process, at start-up)."""
        await self._runner.run("email_gate_create_schema", create_schema)
