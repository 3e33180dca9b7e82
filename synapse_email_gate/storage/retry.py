"""Transactions on hot rows, retried past Synapse's own attempts on PostgreSQL.

Synapse runs PostgreSQL transactions at REPEATABLE READ: two transactions that
update the same row (the shared `global` and per-IP rate-limit buckets, an
address's cooldown row, a username's reservation) cannot both commit; the loser
fails with a serialisation error and Synapse re-runs it, up to 5 times in a
row without a pause. A burst of requests (100 at once from one address was
tested) exhausts those 5 tries and the request would answer 500. Here such a
failure is retried again, a few more times, after a short random pause that
spreads the contenders out; every retry re-reads the rows, so the outcome is
the same as if the transactions had run one after another. SQLite serialises
writers and never gets here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

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


async def run_db_retrying(
    api: ModuleApi,
    desc: str,
    func: Callable[Concatenate[LoggingTransaction, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`api.run_db_interaction`, retried on serialisation failures (see above)."""
    attempt = 1
    while True:
        try:
            result: R = await api.run_db_interaction(desc, func, *args, **kwargs)
            return result
        except Exception as e:
            if attempt >= ATTEMPTS or not is_serialisation_failure(e):
                raise
        pause = _PAUSE_S * attempt * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
        logger.info("%s: serialisation conflict, retry %d in %.0f ms", desc, attempt, pause * 1e3)
        attempt += 1
        await api.sleep(pause)


__all__ = ["ATTEMPTS", "is_serialisation_failure", "run_db_retrying"]
