"""Transaction bodies of storage/requests.py run against real SQLite and PostgreSQL,
without Synapse.

`Txn` gives them what Synapse's LoggingTransaction gives: execute with `?`
placeholders, fetchone/fetchall, rowcount and the database engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from synapse.storage.engines import create_engine

from synapse_email_gate.storage.schema import create_schema
from tests.harness.postgres import PostgresCluster

# The columns of Synapse's own table that the module reads and writes.
REGISTRATION_TOKENS = """
CREATE TABLE IF NOT EXISTS registration_tokens (
    token TEXT NOT NULL UNIQUE,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    expiry_time BIGINT
)
"""


class Txn:
    def __init__(self, connection: Any, engine_name: str) -> None:
        self._connection = connection
        self._cursor = connection.cursor()
        self._pg = engine_name == "psycopg2"
        args = {} if self._pg else {"database": ":memory:"}
        self.database_engine = create_engine({"name": engine_name, "args": args})

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s") if self._pg else sql, params)

    def execute_batch(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        self._cursor.executemany(sql.replace("?", "%s") if self._pg else sql, args)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        """What Synapse does when a transaction body raises."""
        self._connection.rollback()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


@pytest.fixture(params=["sqlite", "postgres"])
def txn(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Txn]:
    if request.param == "sqlite":
        connection: Any = sqlite3.connect(tmp_path / "store.db")
        name = "sqlite3"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        db = f"store_{abs(hash(request.node.nodeid))}"
        cluster.create_database(db)
        connection = cluster.connect(db)
        name = "psycopg2"
    t = Txn(connection, name)
    t.execute(REGISTRATION_TOKENS)
    create_schema(t)
    t.commit()
    yield t
    connection.close()
