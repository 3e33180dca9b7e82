"""Importing the request log of the page this module replaces (`POST
admin/import/registrations`, driven by `synapse-email-gate import`).

Server admins only: it writes what the module remembers about addresses. Each
record is a username, an address and when it was asked for; a bad record is
refused with its row number and the others are imported. What an import does is
in storage/imports.py.
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi

from synapse_email_gate.moderation.service import admin_only, bad
from synapse_email_gate.rules.addresses import InvalidEmail, address_key, parse_email
from synapse_email_gate.rules.matrix_ids import is_localpart
from synapse_email_gate.storage.imports import ImportedAddress, ImportStore
from synapse_email_gate.storage.moderation import ModerationStore

# Per call; the CLI sends a long log in several calls (the body is at most 16 KiB).
MAX_RECORDS = 500
# 2000-01-01 and a day ahead of now: a time outside is a mistake in the log.
_EARLIEST_MS = 946_684_800_000
_AHEAD_MS = 86_400_000


class RecordImport:
    def __init__(
        self,
        api: ModuleApi,
        store: ImportStore,
        moderation: ModerationStore,
        hash_secret: str | None,
    ) -> None:
        self._api = api
        self._store = store
        self._moderation = moderation
        self._hash_secret = hash_secret

    async def import_registrations(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        if not await self._api.is_user_admin(actor):
            raise admin_only("import records")
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise bad("records must be a non-empty list")
        if len(records) > MAX_RECORDS:
            raise bad(f"records: at most {MAX_RECORDS} per call, got {len(records)}")
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise bad("dry_run must be true or false")
        now_ms = self._api.get_current_time_msec()
        by_key: dict[str, tuple[int, set[str]]] = {}
        rejected = []
        for index, record in enumerate(records):
            row, problem = _row_number(index, record)
            if problem is None:
                assert isinstance(record, dict)
                checked = self._check(record, now_ms)
                if isinstance(checked, str):
                    problem = checked
                else:
                    key, localpart, time_ms = checked
                    last_ts, localparts = by_key.get(key, (0, set()))
                    localparts.add(localpart)
                    by_key[key] = (max(last_ts, time_ms), localparts)
            if problem is not None:
                rejected.append({"row": row, "error": problem})
        addresses = [
            ImportedAddress(key, last_ts, frozenset(localparts))
            for key, (last_ts, localparts) in sorted(by_key.items())
        ]
        counts = await self._store.import_addresses(addresses, dry_run) if addresses else None
        answer = {
            "dry_run": dry_run,
            "imported": len(records) - len(rejected),
            "rejected": rejected,
            "addresses": counts.addresses if counts else 0,
            "new_addresses": counts.new_addresses if counts else 0,
            "with_accounts": counts.with_accounts if counts else 0,
        }
        if not dry_run:
            await self._moderation.audit(
                now_ms,
                actor,
                "import.registrations",
                None,
                f"{answer['imported']} imported, {len(rejected)} rejected, "
                f"{answer['addresses']} addresses",
            )
        return answer

    def _check(self, record: dict[str, Any], now_ms: int) -> tuple[str, str, int] | str:
        """(email key, localpart, time) of a record, or what is wrong with it."""
        unknown = sorted(set(record) - {"row", "username", "email", "time_ms"})
        if unknown:
            return f"unknown field {unknown[0]!r}"
        username = record.get("username")
        if not isinstance(username, str) or not is_localpart(username.lower()):
            return f"username must be a localpart like alice, got {username!r}"
        email = record.get("email")
        if not isinstance(email, str):
            return f"email must be a string, got {email!r}"
        try:
            parsed = parse_email(email)
        except InvalidEmail as e:
            return f"email {email!r}: {e.message}"
        time_ms = record.get("time_ms")
        if isinstance(time_ms, bool) or not isinstance(time_ms, int):
            return f"time_ms must be an integer (ms since 1970), got {time_ms!r}"
        if not _EARLIEST_MS <= time_ms <= now_ms + _AHEAD_MS:
            return f"time_ms {time_ms} is not between the year 2000 and now"
        return address_key(parsed.normalised, self._hash_secret), username.lower(), time_ms


def _row_number(index: int, record: object) -> tuple[int, str | None]:
    """The row a record names (its place in the old log), else its place here (from 1)."""
    if not isinstance(record, dict):
        return index + 1, f"a record must be an object, got {type(record).__name__}"
    row = record.get("row", index + 1)
    if isinstance(row, bool) or not isinstance(row, int) or row < 1:
        return index + 1, f"row must be a positive integer, got {row!r}"
    return row, None


__all__ = ["MAX_RECORDS", "RecordImport"]
