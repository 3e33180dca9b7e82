"""Token-bucket arithmetic (pure) and its transaction on the shared bucket table."""

from __future__ import annotations

import math
from collections.abc import Collection

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.config.policy_lists import Bucket
from synapse_email_gate.storage.runner import select_in


def refill(tokens: float, updated_ms: int, now_ms: int, bucket: Bucket) -> float:
    elapsed_s = max(0, now_ms - updated_ms) / 1000
    return min(float(bucket.burst), tokens + elapsed_s * bucket.per_second)


def wait_ms(tokens: float, bucket: Bucket) -> int:
    """How long until one whole token is available again."""
    if tokens >= 1:
        return 0
    if bucket.per_second <= 0:
        return 365 * 24 * 3600 * 1000
    return math.ceil((1 - tokens) / bucket.per_second * 1000)


def take_txn(txn: LoggingTransaction, key: str, bucket: Bucket, now_ms: int) -> int:
    """Take one token from bucket `key`; returns 0 when taken, else ms to wait (no write)."""
    txn.execute("SELECT tokens, updated_ts FROM email_gate_buckets WHERE bucket = ?", (key,))
    row = txn.fetchone()
    tokens = float(bucket.burst) if row is None else refill(row[0], row[1], now_ms, bucket)
    if tokens < 1:
        return wait_ms(tokens, bucket)
    txn.execute(
        """
        INSERT INTO email_gate_buckets (bucket, tokens, updated_ts) VALUES (?, ?, ?)
        ON CONFLICT (bucket)
        DO UPDATE SET tokens = excluded.tokens, updated_ts = excluded.updated_ts
        """,
        (key, tokens - 1, now_ms),
    )
    return 0


class BucketBook:
    """Buckets a batch of requests takes from: each row read once, written once.

    Taking in memory between the two gives each request, in order, the answer
    `take_txn` would have given it in a transaction of its own.
    """

    def __init__(self, rows: dict[str, tuple[float, int]] | None = None) -> None:
        self._rows = dict(rows or {})  # key -> (tokens, updated_ts)
        self._changed: dict[str, None] = {}  # insertion-ordered set

    @classmethod
    def load(cls, txn: LoggingTransaction, keys: Collection[str]) -> BucketBook:
        rows = select_in(
            txn, "SELECT bucket, tokens, updated_ts FROM email_gate_buckets WHERE bucket", keys
        )
        return cls({str(key): (float(tokens), int(ts)) for key, tokens, ts in rows})

    def take(self, key: str, bucket: Bucket, now_ms: int) -> int:
        """Take one token from bucket `key`; 0 when taken, else ms to wait."""
        row = self._rows.get(key)
        tokens = float(bucket.burst) if row is None else refill(row[0], row[1], now_ms, bucket)
        if tokens < 1:
            return wait_ms(tokens, bucket)
        self._rows[key] = (tokens - 1, now_ms if row is None else max(now_ms, row[1]))
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
