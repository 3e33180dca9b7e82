"""Token-bucket arithmetic (pure) and its transaction on the shared bucket table."""

from __future__ import annotations

import math

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.policy_lists import Bucket


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
