"""The one way into the database: every store's transactions run here.

`Runner.run` is `ModuleApi.run_db_interaction`, retried past Synapse's own
attempts on PostgreSQL. Synapse runs PostgreSQL transactions at REPEATABLE
READ: two transactions that update the same row (the shared `global` and
per-IP rate-limit buckets, an address's cooldown row, a username's
reservation) cannot both commit; the loser fails with a serialisation error
and Synapse re-runs it, up to 5 times in a row without a pause. A burst of
requests (100 at once from one address was tested) exhausts those 5 tries and
the request would answer 500. Here such a failure is retried again, a few more
times, after a short random pause that spreads the contenders out; every retry
re-reads the rows, so the outcome is the same as if the transactions had run
one after another. SQLite serialises writers and never gets here.

Batches of items share one transaction through storage/group_commit.py, which
runs on a `Runner` too. The helpers below build the statements several stores
need: `IN (…)` lists and batched writes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATE serialization_failure and deadlock_detected.
_RETRYABLE = frozenset({"40001", "40P01"})
ATTEMPTS = 8
_PAUSE_S = 0.02  # times the attempt number, times a random factor in [0.5, 1.5)


def is_serialisation_failure(error: BaseException) -> bool:
    return getattr(error, "pgcode", None) in _RETRYABLE


class Runner:
    """Runs transaction bodies on Synapse's database pool, for the stores."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    @property
    def server_name(self) -> str:
        return self._api.server_name

    async def run(
        self,
        desc: str,
        func: Callable[Concatenate[LoggingTransaction, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """`func(txn, *args, **kwargs)` in a transaction named `desc`, retried on
        serialisation failures (see above)."""
        return await self.retried(
            desc, lambda: self._api.run_db_interaction(desc, func, *args, **kwargs)
        )

    async def retried(self, desc: str, call: Callable[[], Awaitable[R]]) -> R:
        """`await call()`, called again after a short random pause while it fails with
        a serialisation failure, up to `ATTEMPTS` calls in all."""
        attempt = 1
        while True:
            try:
                return await call()
            except Exception as e:
                if attempt >= ATTEMPTS or not is_serialisation_failure(e):
                    raise
            pause = _PAUSE_S * attempt * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
            logger.info(
                "%s: serialisation conflict, retry %d in %.0f ms", desc, attempt, pause * 1e3
            )
            attempt += 1
            await self._api.sleep(pause)

    def in_background(self, desc: str, func: Callable[[], Awaitable[None]]) -> None:
        """Start `func` as a Synapse background process (group commit's flushes)."""
        self._api.run_as_background_process(desc, func)


def marks(values: Collection[object]) -> str:
    """`?, ?, …`: one placeholder per value, for `IN (…)`."""
    return ", ".join("?" for _ in values)


def select_in(txn: LoggingTransaction, sql: str, values: Collection[str]) -> list[Any]:
    """The rows of `sql` (ending in a column) `IN values`; none, without a query, for
    no values. The values go in sorted, so a statement reads its rows in one order."""
    if not values:
        return []
    ordered = sorted(values)
    txn.execute(f"{sql} IN ({marks(ordered)})", ordered)
    return list(txn.fetchall())


def batch_txn(txn: LoggingTransaction, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`sql` once per row, batched (one round trip per 100 rows on PostgreSQL)."""
    if rows:
        txn.execute_batch(sql, rows)


__all__ = ["ATTEMPTS", "Runner", "batch_txn", "is_serialisation_failure", "marks", "select_in"]
