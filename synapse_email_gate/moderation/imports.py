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
        shaped = [_shape(index, record) for index, record in enumerate(records)]
        now_ms = self._api.get_current_time_msec()
        by_key: dict[str, tuple[int, set[str]]] = {}
        rejected = []
        for row, username, email, time_ms in shaped:
            checked = self._check(username, email, time_ms, now_ms)
            if isinstance(checked, str):
                rejected.append({"row": row, "error": checked})
                continue
            key, localpart = checked
            last_ts, localparts = by_key.get(key, (0, set()))
            localparts.add(localpart)
            by_key[key] = (max(last_ts, time_ms), localparts)
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

    def _check(self, username: str, email: str, time_ms: int, now_ms: int) -> tuple[str, str] | str:
        """(email key, localpart) of a well-formed record, or what is wrong with it."""
        if not is_localpart(username.lower()):
            return f"username must be a localpart like alice, got {username!r}"
        try:
            parsed = parse_email(email)
        except InvalidEmail as e:
            return f"email {email!r}: {e.message}"
        if not _EARLIEST_MS <= time_ms <= now_ms + _AHEAD_MS:
            return f"time_ms {time_ms} is not between the year 2000 and now"
        return address_key(parsed.normalised, self._hash_secret), username.lower()


def _shape(index: int, record: object) -> tuple[int, str, str, int]:
    """(row, username, email, time_ms) of a record; a record not shaped as described
    refuses the whole call (AdminError naming it). Other fields are ignored."""
    where = f"records[{index}]"
    if not isinstance(record, dict):
        raise bad(f"{where} must be an object, got {type(record).__name__}")
    username, email = record.get("username"), record.get("email")
    if not isinstance(username, str):
        raise bad(f"{where}.username must be a string")
    if not isinstance(email, str):
        raise bad(f"{where}.email must be a string")
    time_ms = _integer(record.get("time_ms"))
    if time_ms is None:
        raise bad(f"{where}.time_ms must be an integer (ms since 1970)")
    row = _integer(record.get("row", index + 1))
    if row is None or row < 1:
        raise bad(f"{where}.row must be a positive integer")
    return row, username, email, time_ms


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


__all__ = ["MAX_RECORDS", "RecordImport"]
