"""The module's own tables, created at start-up on SQLite and PostgreSQL.

Several processes (main + workers) may start at once. On PostgreSQL concurrent
`CREATE TABLE IF NOT EXISTS` can fail, so creation runs under a transaction-scoped
advisory lock; SQLite serialises writers by itself.
"""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import PostgresEngine

SCHEMA_VERSION = 1

# Statements that bring tables created at version N-1 to version N, run in order
# under the lock. `_TABLES` always describes the newest version, for new installs.
# Add a step here (and bump SCHEMA_VERSION) whenever a table above changes.
MIGRATIONS: dict[int, list[str]] = {}

# An arbitrary constant naming this module's advisory lock ("EGATE" in ASCII).
_ADVISORY_LOCK_ID = 0x4547415445

_TABLES = [
    """
    CREATE TABLE IF NOT EXISTS email_gate_schema_version (
        version INTEGER NOT NULL
    )
    """,
    # One row per request made on the page or the API.
    # status: received -> issued | suppressed -> registering -> registered; with
    # approval: received -> verifying -> pending -> issued | denied (docs/internals.md)
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
    # Token buckets shared by every process.
    """
    CREATE TABLE IF NOT EXISTS email_gate_buckets (
        bucket TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated_ts BIGINT NOT NULL
    )
    """,
    # Proof-of-work challenges already solved once (challenge.py): kept until they expire.
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
    # Secrets made on first use and shared by every process (the challenge MAC key).
    """
    CREATE TABLE IF NOT EXISTS email_gate_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
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
