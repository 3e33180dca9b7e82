"""Refusals of the request path, counted in memory and added to the database.

A refusal (a 429, an IP or username ban, a failed challenge, ...) leaves no row,
and under a flood there are thousands a second: each costs one dict increment
here, on the path that writes the answer (web/handlers.py). Every
`FLUSH_INTERVAL_MS`, and when the process shuts down, the counts go to
`email_gate_refusals` (hour, errcode, count) by upsert, so the admin page's
picture adds up every process and survives restarts. A flush is filed under the
hour it runs in: a refusal in the last seconds of an hour may count in the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from synapse_email_gate.rules.stats import hour_of
from synapse_email_gate.storage.stats import REFUSALS_KEPT_MS, StatsStore

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_MS = 10_000
# Beyond this many distinct reasons the rest count as one (errcodes are a short list;
# this only bounds memory if something unforeseen gets here).
_MAX_REASONS = 200
_OTHER = "other"


class RefusalTally:
    def __init__(self, store: StatsStore, clock_ms: Callable[[], int]) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self._counts: dict[str, int] = {}
        self._last_purge_hour = 0

    def count(self, reason: str) -> None:
        """One refusal with this errcode (the hot path: no I/O, no clock)."""
        counts = self._counts
        if reason not in counts and len(counts) >= _MAX_REASONS:
            reason = _OTHER
        counts[reason] = counts.get(reason, 0) + 1

    async def flush(self) -> None:
        """Add what this process counted since the last flush to the database."""
        if not self._counts:
            return
        counts, self._counts = self._counts, {}
        try:
            await self._store.add_refusals(hour_of(self._clock_ms()), counts)
        except Exception:
            # Kept for the next flush rather than lost.
            for reason, count in counts.items():
                self._counts[reason] = self._counts.get(reason, 0) + count
            logger.warning(
                "refusal counts not written yet; retried at the next flush", exc_info=True
            )

    async def purge(self) -> None:
        """Drop refusal counts too old for any picture (once an hour at most)."""
        hour = hour_of(self._clock_ms())
        if hour == self._last_purge_hour:
            return
        await self._store.purge_refusals(hour - REFUSALS_KEPT_MS)
        self._last_purge_hour = hour
