"""Schema creation from many processes at once, on PostgreSQL as Synapse runs it.

Each connection is REPEATABLE READ, as Synapse sets them, and runs `create_schema`
in one transaction; a barrier lines them up. The module's tables must come out
once, with one version row, however the transactions interleave.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, cast

from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import create_engine

from synapse_email_gate.storage.schema import create_schema
from tests.harness.postgres import PostgresCluster

PROCESSES = 8
ROUNDS = 3


class _Txn:
    """What create_schema uses of Synapse's LoggingTransaction."""

    def __init__(self, connection: Any) -> None:
        self._cursor = connection.cursor()
        self.database_engine = create_engine({"name": "psycopg2", "args": {}})

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()


def _race(postgres: PostgresCluster, db: str) -> list[BaseException]:
    connections = [postgres.connect(db) for _ in range(PROCESSES)]
    for connection in connections:
        connection.set_session(isolation_level="REPEATABLE READ")  # as Synapse does
    barrier = threading.Barrier(PROCESSES)
    errors: list[BaseException] = []

    def start(connection: Any) -> None:
        try:
            barrier.wait(10)
            create_schema(cast(LoggingTransaction, _Txn(connection)))
            connection.commit()
        except BaseException as e:
            errors.append(e)
            connection.rollback()

    threads = [threading.Thread(target=start, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for connection in connections:
        connection.close()
    return errors


def test_processes_creating_the_schema_at_once_make_it_once(postgres: PostgresCluster) -> None:
    for _ in range(ROUNDS):
        db = postgres.create_database(f"schema_race_{secrets.token_hex(4)}")
        errors = _race(postgres, db)
        assert not errors, errors
        conn = postgres.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version FROM email_gate_schema_version")
                versions = cur.fetchall()
        finally:
            conn.close()
        assert len(versions) == 1, versions
