"""The picture of the gate: counts per time bucket, and the refusal counts per hour.

Requests, tokens and accounts are counted from the module's own tables through
their time indexes (`email_gate_requests.created_ts`, `email_gate_tokens.created_ts`,
`email_gate_token_uses.used_ts`): one range scan of the window per table, grouped
by bucket in SQL. Refusals leave no row of their own: every process counts them
in memory and adds its counts here, per UTC hour and errcode, by upsert
(requests/refusal_tally.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.rules.stats import Window
from synapse_email_gate.storage.runner import Runner

# Refusal counts older than this are deleted by the process that runs background tasks.
REFUSALS_KEPT_MS = 8 * 86_400_000


@attrs.frozen
class Series:
    """Counts per bucket of one window; `refusals`: errcode -> counts per bucket."""

    requests: list[int]
    tokens: list[int]
    accounts: list[int]
    refusals: dict[str, list[int]]


def add_refusals_txn(txn: LoggingTransaction, hour_ms: int, counts: Mapping[str, int]) -> None:
    for reason, count in sorted(counts.items()):
        txn.execute(
            """
            INSERT INTO email_gate_refusals (hour_ts, reason, count) VALUES (?, ?, ?)
            ON CONFLICT (hour_ts, reason)
            DO UPDATE SET count = email_gate_refusals.count + excluded.count
            """,
            (hour_ms, reason, count),
        )


def purge_refusals_txn(txn: LoggingTransaction, before_ms: int) -> None:
    txn.execute("DELETE FROM email_gate_refusals WHERE hour_ts < ?", (before_ms,))


# Table and time column of each counted series; a fixed list, never user input.
_COUNTED = {
    "requests": "SELECT (created_ts - ?) / ?, COUNT(*) FROM email_gate_requests"
    " WHERE created_ts >= ? AND created_ts < ? GROUP BY 1",
    "tokens": "SELECT (created_ts - ?) / ?, COUNT(*) FROM email_gate_tokens"
    " WHERE created_ts >= ? AND created_ts < ? GROUP BY 1",
    "accounts": "SELECT (used_ts - ?) / ?, COUNT(*) FROM email_gate_token_uses"
    " WHERE used_ts >= ? AND used_ts < ? AND state = 'used' GROUP BY 1",
}


def series_txn(txn: LoggingTransaction, window: Window) -> Series:
    args = (window.start_ms, window.step_ms, window.start_ms, window.end_ms)
    counted: dict[str, list[int]] = {}
    for name, sql in _COUNTED.items():
        counts = [0] * window.count
        txn.execute(sql, args)
        for index, count in txn.fetchall():
            if 0 <= int(index) < window.count:
                counts[int(index)] += int(count)
        counted[name] = counts
    refusals: dict[str, list[int]] = {}
    txn.execute(
        "SELECT hour_ts, reason, count FROM email_gate_refusals WHERE hour_ts >= ? AND hour_ts < ?",
        (window.start_ms, window.end_ms),
    )
    for hour_ts, reason, count in txn.fetchall():
        index = window.index(int(hour_ts))
        if index is not None:
            refusals.setdefault(str(reason), [0] * window.count)[index] += int(count)
    return Series(counted["requests"], counted["tokens"], counted["accounts"], refusals)


class StatsStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def add_refusals(self, hour_ms: int, counts: Mapping[str, int]) -> None:
        await self._runner.run("email_gate_add_refusals", add_refusals_txn, hour_ms, counts)

    async def purge_refusals(self, before_ms: int) -> None:
        await self._runner.run("email_gate_purge_refusals", purge_refusals_txn, before_ms)

    async def series(self, window: Window) -> Series:
        return await self._runner.run("email_gate_stats", series_txn, window)
