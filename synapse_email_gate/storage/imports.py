"""Records imported from the page this module replaces (`POST admin/import/registrations`).

An imported request becomes what the module itself remembers of an address
(`email_gate_addresses`): when it was last mailed (the cooldown counts from
there) and how many accounts it made (one account per address). Each address
takes the later time and the larger count of what it had and what was imported,
so an import can be repeated, and never loosens what the module knew.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage.runner import Runner, batch_txn, select_in


@attrs.frozen
class ImportedAddress:
    email_key: str
    last_ts: int  # the latest request of the address, ms
    localparts: frozenset[str]  # the usernames it asked for


@attrs.frozen
class ImportCounts:
    addresses: int  # distinct addresses imported
    new_addresses: int  # of which the module knew nothing yet
    with_accounts: int  # of which one username or more is an account here


def import_addresses_txn(
    txn: LoggingTransaction,
    server_name: str,
    addresses: Sequence[ImportedAddress],
    dry_run: bool,
) -> ImportCounts:
    user_ids = {f"@{lp}:{server_name}": lp for a in addresses for lp in a.localparts}
    users = select_in(txn, "SELECT name FROM users WHERE name", user_ids)
    made = {user_ids[row[0]] for row in users}
    known = {
        row[0]
        for row in select_in(
            txn,
            "SELECT email_key FROM email_gate_addresses WHERE email_key",
            [a.email_key for a in addresses],
        )
    }
    rows = [(a.email_key, a.last_ts, _accounts(a.localparts, made)) for a in addresses]
    if not dry_run:
        batch_txn(
            txn,
            """
            INSERT INTO email_gate_addresses (email_key, last_sent_ts, accounts) VALUES (?, ?, ?)
            ON CONFLICT (email_key) DO UPDATE SET
                last_sent_ts = CASE WHEN excluded.last_sent_ts > email_gate_addresses.last_sent_ts
                    THEN excluded.last_sent_ts ELSE email_gate_addresses.last_sent_ts END,
                accounts = CASE WHEN excluded.accounts > email_gate_addresses.accounts
                    THEN excluded.accounts ELSE email_gate_addresses.accounts END
            """,
            rows,
        )
    return ImportCounts(
        addresses=len(rows),
        new_addresses=sum(1 for a in addresses if a.email_key not in known),
        with_accounts=sum(1 for row in rows if row[2] > 0),
    )


def _accounts(localparts: Collection[str], made: Collection[str]) -> int:
    return sum(1 for lp in localparts if lp in made)


class ImportStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def import_addresses(
        self, addresses: Sequence[ImportedAddress], dry_run: bool
    ) -> ImportCounts:
        """Merge the addresses into the module's records (or, with `dry_run`, only
        count what would change)."""
        return await self._runner.run(
            "email_gate_import_addresses",
            import_addresses_txn,
            self._runner.server_name,
            addresses,
            dry_run,
        )
