"""The surge switch's row, shared by every process, and the recent requests it counts."""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.rules.surge import SurgeState
from synapse_email_gate.storage.moderation import audit_txn
from synapse_email_gate.storage.runner import Runner

_ROW = "surge"
# At most this many recent requests are counted per check: a wave bigger than
# that has passed every threshold long before.
MAX_COUNTED = 50_000


def read_txn(txn: LoggingTransaction) -> SurgeState:
    txn.execute(
        """
        SELECT mode, cause, scope, level, since_ts, until_ts, quiet_until_ts
        FROM email_gate_surge WHERE name = ?
        """,
        (_ROW,),
    )
    row = txn.fetchone()
    if row is None:
        return SurgeState()
    mode, cause, scope, level, since_ts, until_ts, quiet_until_ts = row
    return SurgeState(
        str(mode), str(cause), str(scope), int(level), int(since_ts), int(until_ts),
        int(quiet_until_ts),
    )  # fmt: skip


def switch_txn(
    txn: LoggingTransaction,
    expected: SurgeState | None,
    new: SurgeState,
    actor: str,
    detail: str,
) -> SurgeState | None:
    """Write `new` with its audit entry; with `expected`, only if the row still holds
    that (else None: another process or a moderator switched it first)."""
    current = read_txn(txn)
    if expected is not None and current != expected:
        return None
    txn.execute(
        """
        INSERT INTO email_gate_surge (name, mode, cause, scope, level, since_ts, until_ts,
            quiet_until_ts, changed_by)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET mode = excluded.mode, cause = excluded.cause,
            scope = excluded.scope, level = excluded.level, since_ts = excluded.since_ts,
            until_ts = excluded.until_ts, quiet_until_ts = excluded.quiet_until_ts,
            changed_by = excluded.changed_by
        """,
        (
            _ROW, new.mode, new.cause, new.scope, new.level, new.since_ts, new.until_ts,
            new.quiet_until_ts, actor,
        ),
    )  # fmt: skip
    action = "surge.on" if new.on else "surge.off"
    audit_txn(txn, new_id(), new.since_ts, actor, action, new.scope or None, detail)
    return new


def recent_requests_txn(
    txn: LoggingTransaction, since_ms: int, limit: int
) -> list[tuple[str | None, str | None]]:
    """(ip, address) of the requests recorded since `since_ms`, newest first."""
    txn.execute(
        """
        SELECT ip, email FROM email_gate_requests WHERE created_ts >= ?
        ORDER BY created_ts DESC LIMIT ?
        """,
        (since_ms, limit),
    )
    return [(row[0], row[1]) for row in txn.fetchall()]


class SurgeStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def current(self) -> SurgeState:
        return await self._runner.run("email_gate_surge_read", read_txn)

    async def switch(
        self, expected: SurgeState | None, new: SurgeState, actor: str, detail: str
    ) -> SurgeState | None:
        """Store a switch and its audit entry in one transaction (see `switch_txn`)."""
        return await self._runner.run(
            "email_gate_surge_switch", switch_txn, expected, new, actor, detail
        )

    async def recent_requests(self, since_ms: int) -> list[tuple[str | None, str | None]]:
        return await self._runner.run(
            "email_gate_surge_count", recent_requests_txn, since_ms, MAX_COUNTED
        )
