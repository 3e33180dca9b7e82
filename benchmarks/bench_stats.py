"""The picture's cost (GET admin/stats) at a big history: N requests, N tokens and
0.6 N accounts in the last six days, on SQLite and PostgreSQL.

Module: the transactions of storage/stats.py on a database seeded like
bench_history's (plus tokens and token uses), without Synapse. Figures: the
first look at the week (every bucket counted: what a process pays once after a
start) and a later look (only the open bucket counted; the buckets that are over
are kept in memory by moderation/stats.py).

The floor: the obvious query, one GROUP BY over the whole window per table, on
the same rows in the same run. Verdict: a later look at most 0.1x of it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from common import Context, Result, fmt_ms, median, say, seed_postgres, seed_sqlite

from synapse_email_gate.rules.stats import window
from synapse_email_gate.storage.stats import COUNTED, counts_txn, refusals_txn

_DAY_MS = 86_400_000


def _extra_rows(rows: int, now_ms: int, series: str) -> list[str]:
    step = max(1, 6 * _DAY_MS // rows)
    ts = f"({now_ms} - x * {step})"
    return [
        f"INSERT INTO email_gate_tokens (token, kind, created_ts) "
        f"SELECT 'seedtok' || x, 'email', {ts} FROM {series}",
        f"INSERT INTO email_gate_token_uses (localpart, token, state, claimed_ts, "
        f"lease_until_ts, used_ts) SELECT 'seeduser' || x, 'seedtok' || x, 'used', {ts}, 0, {ts} "
        f"FROM {series} WHERE x % 10 < 6",
    ]


class _Txn:
    def __init__(self, connection: Any, pg: bool) -> None:
        self._cursor = connection.cursor()
        self._pg = pg

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s") if self._pg else sql, args)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


_GROUPED = {
    "requests": ("email_gate_requests", "created_ts", ""),
    "tokens": ("email_gate_tokens", "created_ts", ""),
    "accounts": ("email_gate_token_uses", "used_ts", " AND state = 'used'"),
}


def _grouped(txn: _Txn, start: int, step: int, end: int) -> None:
    for table, column, extra in _GROUPED.values():
        txn.execute(
            f"SELECT ({column} - ?) / ?, COUNT(*) FROM {table} "
            f"WHERE {column} >= ? AND {column} < ?{extra} GROUP BY 1",
            (start, step, start, end),
        )
        txn.fetchall()


def _measure(ctx: Context, connection: Any, pg: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"first": [], "later": [], "grouped": []}
    for _ in range(ctx.runs):
        week = window("week", int(time.time() * 1000))
        keys = [(s, a, a + week.step_ms) for s in COUNTED for a in week.starts()]
        t0 = time.perf_counter()
        counts_txn(_Txn(connection, pg), keys)
        refusals_txn(_Txn(connection, pg), week)
        out["first"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        counts_txn(_Txn(connection, pg), keys[week.count - 1 :: week.count])
        refusals_txn(_Txn(connection, pg), week)
        out["later"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _grouped(_Txn(connection, pg), week.start_ms, week.step_ms, week.end_ms)
        out["grouped"].append(time.perf_counter() - t0)
    return out


def run(ctx: Context) -> list[Result]:
    rows = ctx.big_history
    results = []
    for engine in ("sqlite", "postgres"):
        now_ms = int(time.time() * 1000)
        if engine == "sqlite":
            path = ctx.tmp / f"stats-{rows}.db"
            seed_sqlite(path, rows)
            connection: Any = sqlite3.connect(path)
            series = (
                f"(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s "
                f"WHERE x < {rows}) SELECT x FROM s)"
            )
            for statement in _extra_rows(rows, now_ms, series):
                connection.execute(statement)
            connection.commit()
            connection.execute("ANALYZE")
            connection.commit()
        else:
            cluster = ctx.postgres
            name = f"bench_stats_{rows}"
            cluster.create_database(name)
            seed_postgres(cluster, name, rows)
            connection = cluster.connect(name)
            with connection.cursor() as cur:
                for statement in _extra_rows(rows, now_ms, f"generate_series(1, {rows}) AS s(x)"):
                    cur.execute(statement)
            connection.commit()
            connection.autocommit = True
            with connection.cursor() as cur:
                for table in ("email_gate_tokens", "email_gate_token_uses"):
                    cur.execute(f"VACUUM ANALYZE {table}")
        try:
            figures = _measure(ctx, connection, engine == "postgres")
        finally:
            connection.close()
        first, later, grouped = (median(figures[k]) for k in ("first", "later", "grouped"))
        say(f"    {engine}: first look {fmt_ms(first)}, later {fmt_ms(later)}")
        results.append(
            Result(
                "stats",
                f"the week's picture at {rows:,} requests ({engine}): later look",
                f"{fmt_ms(later)} (first look {fmt_ms(first)})",
                f"GROUP BY {fmt_ms(grouped)}",
                later / grouped,
                "later look ≤ 0.1x the GROUP BY",
                later <= 0.1 * grouped,
                "module: COUNT per bucket, buckets that are over kept in memory; the floor, "
                "one GROUP BY over the same rows, measured in the same run",
                figures,
            )
        )
    return results
