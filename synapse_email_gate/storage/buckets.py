"""Rate-limit buckets: their arithmetic (pure), and their rows in the shared table.

A bucket holds credit, up to its `burst`, refilled at `per_second`; each request
it limits takes one unit. (The table's column is still named `tokens`.)
"""

from __future__ import annotations

import math
from collections.abc import Collection

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage.runner import Runner, select_in


def refill(credit: float, updated_ms: int, now_ms: int, bucket: Bucket) -> float:
    elapsed_s = max(0, now_ms - updated_ms) / 1000
    return min(float(bucket.burst), credit + elapsed_s * bucket.per_second)


def wait_ms(credit: float, bucket: Bucket) -> int:
    """How long until one whole unit of credit is there again."""
    if credit >= 1:
        return 0
    if bucket.per_second <= 0:
        return 365 * 24 * 3600 * 1000
    return math.ceil((1 - credit) / bucket.per_second * 1000)


class BucketBook:
    """Buckets a batch of requests takes from: each row read once, written once.

    Taking in memory between the two gives each request, in order, the answer
    it would have had in a transaction of its own.
    """

    def __init__(self, rows: dict[str, tuple[float, int]] | None = None) -> None:
        self._rows = dict(rows or {})  # key -> (credit, updated_ts)
        self._changed: dict[str, None] = {}  # insertion-ordered set

    @classmethod
    def load(cls, txn: LoggingTransaction, keys: Collection[str]) -> BucketBook:
        rows = select_in(
            txn, "SELECT bucket, tokens, updated_ts FROM email_gate_buckets WHERE bucket", keys
        )
        return cls({str(key): (float(credit), int(ts)) for key, credit, ts in rows})

    def wait(self, key: str, bucket: Bucket, now_ms: int) -> int:
        """0 when bucket `key` has a unit of credit, else the ms to wait; takes nothing."""
        row = self._rows.get(key)
        credit = float(bucket.burst) if row is None else refill(row[0], row[1], now_ms, bucket)
        return wait_ms(credit, bucket)

    def take(self, key: str, bucket: Bucket, now_ms: int) -> int:
        """Take one unit of credit from bucket `key`; 0 when taken, else ms to wait."""
        row = self._rows.get(key)
        credit = float(bucket.burst) if row is None else refill(row[0], row[1], now_ms, bucket)
        if credit < 1:
            return wait_ms(credit, bucket)
        self._rows[key] = (credit - 1, now_ms if row is None else max(now_ms, row[1]))
        self._changed[key] = None
        return 0

    def write(self, txn: LoggingTransaction) -> None:
        """Store the buckets taken from (after the last `take`)."""
        if not self._changed:
            return
        txn.execute_batch(
            """
            INSERT INTO email_gate_buckets (bucket, tokens, updated_ts) VALUES (?, ?, ?)
            ON CONFLICT (bucket)
            DO UPDATE SET tokens = excluded.tokens, updated_ts = excluded.updated_ts
            """,
            [(key, *self._rows[key]) for key in self._changed],
        )
        self._changed.clear()


def _take_txn(txn: LoggingTransaction, key: str, bucket: Bucket, now_ms: int) -> int:
    book = BucketBook.load(txn, {key})
    wait = book.take(key, bucket, now_ms)
    book.write(txn)
    return wait


class BucketStore:
    """Rate limits taken one at a time (the request path takes its own in the intake
    batch, storage/intake.py)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def take(self, key: str, bucket: Bucket, now_ms: int) -> int:
        """Take one unit of credit from bucket `key`: 0 when taken, else the ms to wait
        (and nothing is written). The transaction is named for the key's kind:
        `web_registration:…` runs as `email_gate_web_registration_limit`."""
        kind = key.split(":", 1)[0]
        return await self._runner.run(f"email_gate_{kind}_limit", _take_txn, key, bucket, now_ms)
