"""Queries behind the admin API: requests, bans, moderators, audit log (tokens:
storage/tokens.py)."""

from __future__ import annotations

from typing import Any

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.config.policy_lists import BanEntry, PolicyLists
from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.storage.runner import Runner

# Not `token`: a request's token goes to the person's mail and nowhere else
# (a moderator who read it could register the reserved name as their own).
REQUEST_COLUMNS = (
    "id, created_ts, updated_ts, localpart, email, ip, status, reason, expires_ts, "
    "user_id, statement, decided_by, decision_message"
)
_REQUEST_KEYS = [c.strip() for c in REQUEST_COLUMNS.split(",")]


def _request(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_REQUEST_KEYS, row, strict=True))


def list_requests_txn(
    txn: LoggingTransaction,
    status: str | None,
    search: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Newest first; `search` matches username, address or IP as a substring."""
    clauses, params = [], []
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append(
            "(localpart LIKE ? ESCAPE '\\' OR email LIKE ? ESCAPE '\\' OR ip LIKE ? ESCAPE '\\')"
        )
        params += [like, like, like]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    txn.execute(
        f"SELECT {REQUEST_COLUMNS} FROM email_gate_requests {where}"  # noqa: S608 - fixed text
        " ORDER BY created_ts DESC, id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [_request(row) for row in txn.fetchall()]


def get_request_txn(txn: LoggingTransaction, request_id: str) -> dict[str, Any] | None:
    txn.execute(
        f"SELECT {REQUEST_COLUMNS} FROM email_gate_requests WHERE id = ?",  # noqa: S608
        (request_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    request = _request(row)
    txn.execute(
        """
        SELECT kind, status, created_ts, attempts, last_error, sent_ts
        FROM email_gate_outbox WHERE request_id = ? ORDER BY created_ts
        """,
        (request_id,),
    )
    keys = ("kind", "status", "created_ts", "attempts", "last_error", "sent_ts")
    request["mails"] = [dict(zip(keys, r, strict=True)) for r in txn.fetchall()]
    request["history"] = list_audit_txn(txn, 100, 0, target=request_id)
    return request


# --- bans -------------------------------------------------------------------


@attrs.frozen
class StoredBan:
    id: str
    kind: str
    entry: BanEntry
    created_by: str
    created_ts: int


def list_bans_txn(txn: LoggingTransaction) -> list[StoredBan]:
    txn.execute(
        """
        SELECT id, kind, match, reason, expires_ts, created_by, created_ts
        FROM email_gate_bans ORDER BY created_ts, id
        """
    )
    return [
        StoredBan(
            id=row[0],
            kind=row[1],
            entry=BanEntry(match=row[2], reason=row[3], expires_ts=row[4]),
            created_by=row[5],
            created_ts=row[6],
        )
        for row in txn.fetchall()
    ]


def stored_policy_layer(bans: list[StoredBan]) -> PolicyLists:
    def of(kind: str) -> tuple[BanEntry, ...]:
        return tuple(ban.entry for ban in bans if ban.kind == kind)

    return PolicyLists(
        banned_usernames=of("username"), banned_emails=of("email"), banned_ips=of("ip")
    )


def add_ban_txn(txn: LoggingTransaction, ban: StoredBan) -> None:
    txn.execute(
        """
        INSERT INTO email_gate_bans (id, kind, match, reason, expires_ts, created_by, created_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
        (
            ban.id,
            ban.kind,
            ban.entry.match,
            ban.entry.reason,
            ban.entry.expires_ts,
            ban.created_by,
            ban.created_ts,
        ),
    )


def remove_ban_txn(txn: LoggingTransaction, ban_id: str) -> bool:
    txn.execute("DELETE FROM email_gate_bans WHERE id = ?", (ban_id,))
    return txn.rowcount == 1


# --- moderators ---------------------------------------------------------------


def list_moderators_txn(txn: LoggingTransaction) -> list[dict[str, Any]]:
    txn.execute("SELECT entry, added_by, added_ts FROM email_gate_moderators ORDER BY entry")
    return [{"entry": r[0], "added_by": r[1], "added_ts": r[2]} for r in txn.fetchall()]


def add_moderator_txn(txn: LoggingTransaction, entry: str, by: str, now_ms: int) -> bool:
    txn.execute(
        """
        INSERT INTO email_gate_moderators (entry, added_by, added_ts) VALUES (?, ?, ?)
        ON CONFLICT (entry) DO NOTHING
        """,
        (entry, by, now_ms),
    )
    return txn.rowcount == 1


def remove_moderator_txn(txn: LoggingTransaction, entry: str) -> bool:
    txn.execute("DELETE FROM email_gate_moderators WHERE entry = ?", (entry,))
    return txn.rowcount == 1


# --- audit log ----------------------------------------------------------------


def audit_txn(
    txn: LoggingTransaction,
    audit_id: str,
    now_ms: int,
    actor: str,
    action: str,
    target: str | None,
    detail: str | None,
) -> None:
    txn.execute(
        """
        INSERT INTO email_gate_audit (id, ts, actor, action, target, detail)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        (audit_id, now_ms, actor, action, target, detail),
    )


def list_audit_txn(
    txn: LoggingTransaction, limit: int, offset: int, target: str | None = None
) -> list[dict[str, Any]]:
    where, params = ("WHERE target = ?", [target]) if target is not None else ("", [])
    txn.execute(
        "SELECT ts, actor, action, target, detail FROM email_gate_audit "  # noqa: S608
        f"{where} ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    keys = ("ts", "actor", "action", "target", "detail")
    return [dict(zip(keys, row, strict=True)) for row in txn.fetchall()]


class ModerationStore:
    """Requests as moderators see them, bans and moderators added at run time, and
    the audit log."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def requests(
        self, status: str | None, search: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        return await self._runner.run(
            "email_gate_list_requests", list_requests_txn, status, search, limit, offset
        )

    async def request(self, request_id: str) -> dict[str, Any] | None:
        """One request with its mails and its history in the audit log."""
        return await self._runner.run("email_gate_get_request", get_request_txn, request_id)

    async def bans(self) -> list[StoredBan]:
        return await self._runner.run("email_gate_bans", list_bans_txn)

    async def stored_policy(self) -> PolicyLists:
        """The stored bans as a layer of the policy."""
        return stored_policy_layer(await self._runner.run("email_gate_load_bans", list_bans_txn))

    async def add_ban(self, ban: StoredBan) -> None:
        await self._runner.run("email_gate_add_ban", add_ban_txn, ban)

    async def remove_ban(self, ban_id: str) -> bool:
        return await self._runner.run("email_gate_remove_ban", remove_ban_txn, ban_id)

    async def moderators(self) -> list[dict[str, Any]]:
        return await self._runner.run("email_gate_moderators", list_moderators_txn)

    async def add_moderator(self, entry: str, by: str, now_ms: int) -> bool:
        """False when the entry was there already."""
        return await self._runner.run("email_gate_allow", add_moderator_txn, entry, by, now_ms)

    async def remove_moderator(self, entry: str) -> bool:
        return await self._runner.run("email_gate_disallow", remove_moderator_txn, entry)

    async def audit(
        self, now_ms: int, actor: str, action: str, target: str | None, detail: str | None
    ) -> None:
        await self._runner.run(
            "email_gate_audit", audit_txn, new_id(), now_ms, actor, action, target, detail
        )

    async def audit_log(self, limit: int, offset: int) -> list[dict[str, Any]]:
        return await self._runner.run("email_gate_audit_log", list_audit_txn, limit, offset)
