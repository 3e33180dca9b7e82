"""What the unit tests of requests/ use of ModuleApi: the clock and database
transactions, on a real SQLite database without Synapse."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synapse_email_gate.storage.schema import create_schema
from tests.storage.conftest import REGISTRATION_TOKENS, Txn

NOW = 1_700_000_000_000


class FakeApi:
    """What ChallengeGate uses of ModuleApi: the clock and database transactions."""

    def __init__(self, path: Path) -> None:
        self.now = NOW
        self.connection = sqlite3.connect(path)
        self.transactions: list[str] = []
        txn = Txn(self.connection, "sqlite3")
        txn.execute(REGISTRATION_TOKENS)  # Synapse's table, which the purge also cleans
        create_schema(txn)
        txn.commit()

    def get_current_time_msec(self) -> int:
        return self.now

    async def run_db_interaction(self, desc: str, func: Callable[..., Any], *args: Any) -> Any:
        self.transactions.append(desc)
        txn = Txn(self.connection, "sqlite3")
        try:
            result = func(txn, *args)
        except Exception:
            txn.rollback()
            raise
        txn.commit()
        return result
