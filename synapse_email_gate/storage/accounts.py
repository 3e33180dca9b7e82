"""The accounts made through the gate: who is on probation, and the listing behind
mass action (with Synapse's own view of each account: admin, locked, suspended,
deactivated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage.runner import Runner, marks

# Row of email_gate_state: when probation was switched on (accounts made before are
# never on probation); no row while it is off.
PROBATION_SINCE = "probation_since"
# At most this many accounts are read for one listing or action.
MAX_ACCOUNTS = 1000
# At most this many are read to match a network (CIDR) among them.
SCAN_LIMIT = 100_000


@attrs.frozen
class ProbationLift:
    lifted_ts: int
    lifted_by: str


def start_probation_txn(txn: LoggingTransaction, now_ms: int) -> int:
    """Probation is on: since when (kept from an earlier start)."""
    txn.execute(
        "INSERT INTO email_gate_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (PROBATION_SINCE, now_ms),
    )
    txn.execute("SELECT value FROM email_gate_state WHERE name = ?", (PROBATION_SINCE,))
    row = txn.fetchone()
    return int(row[0]) if row is not None else now_ms


def stop_probation_txn(txn: LoggingTransaction) -> None:
    txn.execute("DELETE FROM email_gate_state WHERE name = ?", (PROBATION_SINCE,))


def probationers_txn(txn: LoggingTransaction, registered_since_ms: int) -> dict[str, int]:
    """user ID -> when it registered, for the gate's accounts made since then whose
    probation was not lifted."""
    txn.execute(
        """
        SELECT u.user_id, u.used_ts FROM email_gate_token_uses u
        LEFT JOIN email_gate_probation_lifts l ON l.user_id = u.user_id
        WHERE u.state = 'used' AND u.used_ts >= ? AND l.user_id IS NULL
          AND u.user_id IS NOT NULL
        """,
        (registered_since_ms,),
    )
    return {str(user_id): int(used_ts) for user_id, used_ts in txn.fetchall()}


def lift_probation_txn(txn: LoggingTransaction, user_id: str, now_ms: int, actor: str) -> bool:
    """False when it was lifted already."""
    txn.execute(
        """
        INSERT INTO email_gate_probation_lifts (user_id, lifted_ts, lifted_by) VALUES (?, ?, ?)
        ON CONFLICT (user_id) DO NOTHING
        """,
        (user_id, now_ms, actor),
    )
    return bool(txn.rowcount)


def registered_ts_txn(txn: LoggingTransaction, user_id: str) -> int | None:
    """When the gate made this account; None if it did not."""
    txn.execute(
        "SELECT used_ts FROM email_gate_token_uses WHERE user_id = ? AND state = 'used'",
        (user_id,),
    )
    row = txn.fetchone()
    return None if row is None or row[0] is None else int(row[0])


def probation_lift_txn(txn: LoggingTransaction, user_id: str) -> ProbationLift | None:
    txn.execute(
        "SELECT lifted_ts, lifted_by FROM email_gate_probation_lifts WHERE user_id = ?",
        (user_id,),
    )
    row = txn.fetchone()
    return None if row is None else ProbationLift(lifted_ts=int(row[0]), lifted_by=str(row[1]))


@attrs.frozen
class AccountWhere:
    """What the listing narrows by in SQL; None: not narrowed."""

    ip: str | None = None
    domain: str | None = None
    token: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


_LISTING_KEYS = (
    "user_id",
    "registered_ts",
    "registration_ip",
    "via",
    "token",
    "token_kind",
    "request_id",
    "request_ip",
    "email",
    "requested_ts",
)
_USER_KEYS = ("admin", "deactivated", "locked", "suspended")


def gate_accounts_txn(
    txn: LoggingTransaction,
    where: AccountWhere,
    limit: int,
) -> list[dict[str, Any]]:
    """The gate's accounts (newest first), with the request behind each and Synapse's
    flags, narrowed by `where` (a CIDR is left to the caller)."""
    clauses: list[str] = ["u.state = 'used'", "u.user_id IS NOT NULL"]
    params: list[object] = []
    token, since_ms, until_ms = where.token, where.since_ms, where.until_ms
    if where.ip is not None:
        clauses.append("(u.ip = ? OR r.ip = ?)")
        params += [where.ip, where.ip]
    if where.domain is not None:
        # The address's domain or a subdomain of it (a hashed address matches neither).
        clauses.append("(LOWER(r.email) LIKE ? ESCAPE '\\' OR LOWER(r.email) LIKE ? ESCAPE '\\')")
        escaped = where.domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params += [f"%@{escaped}", f"%@%.{escaped}"]
    if token is not None:
        clauses.append("u.token = ?")
        params.append(token)
    if since_ms is not None:
        clauses.append("u.used_ts >= ?")
        params.append(since_ms)
    if until_ms is not None:
        clauses.append("u.used_ts < ?")
        params.append(until_ms)
    txn.execute(
        f"""
        SELECT u.user_id, u.used_ts, u.ip, u.via, u.token, t.kind, t.request_id, r.ip,
            r.email, r.created_ts
        FROM email_gate_token_uses u
        JOIN email_gate_tokens t ON t.token = u.token
        LEFT JOIN email_gate_requests r ON r.id = t.request_id
        WHERE {" AND ".join(clauses)}
        ORDER BY u.used_ts DESC, u.user_id LIMIT ?
        """,  # noqa: S608 - fixed clauses, values are parameters
        (*params, limit),
    )
    accounts = [dict(zip(_LISTING_KEYS, row, strict=True)) for row in txn.fetchall()]
    flags = synapse_flags_txn(txn, [a["user_id"] for a in accounts])
    for account in accounts:
        account.update(flags.get(account["user_id"], dict.fromkeys(_USER_KEYS, False)))
        account["exists"] = account["user_id"] in flags
    return accounts


def synapse_flags_txn(
    txn: LoggingTransaction, user_ids: Sequence[str]
) -> dict[str, dict[str, bool]]:
    """user ID -> Synapse's admin, deactivated, locked and suspended flags (from `users`)."""
    found: dict[str, dict[str, bool]] = {}
    for start in range(0, len(user_ids), 500):
        chunk = sorted(user_ids[start : start + 500])
        txn.execute(
            f"""
            SELECT name, admin, deactivated, locked, suspended FROM users
            WHERE name IN ({marks(chunk)})
            """,  # noqa: S608 - placeholders only
            chunk,
        )
        for name, *values in txn.fetchall():
            found[str(name)] = {key: bool(v) for key, v in zip(_USER_KEYS, values, strict=True)}
    return found


class AccountStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def start_probation(self, now_ms: int) -> int:
        return await self._runner.run("email_gate_probation_start", start_probation_txn, now_ms)

    async def stop_probation(self) -> None:
        await self._runner.run("email_gate_probation_stop", stop_probation_txn)

    async def probationers(self, registered_since_ms: int) -> dict[str, int]:
        return await self._runner.run(
            "email_gate_probationers", probationers_txn, registered_since_ms
        )

    async def lift_probation(self, user_id: str, now_ms: int, actor: str) -> bool:
        return await self._runner.run(
            "email_gate_probation_lift", lift_probation_txn, user_id, now_ms, actor
        )

    async def registered_ts(self, user_id: str) -> int | None:
        return await self._runner.run("email_gate_registered_ts", registered_ts_txn, user_id)

    async def probation_lift(self, user_id: str) -> ProbationLift | None:
        return await self._runner.run("email_gate_probation_lifted", probation_lift_txn, user_id)

    async def gate_accounts(self, where: AccountWhere, limit: int) -> list[dict[str, Any]]:
        return await self._runner.run("email_gate_accounts", gate_accounts_txn, where, limit)
