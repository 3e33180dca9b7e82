"""The picture of the gate for moderators: what `GET admin/stats` answers.

Requests, issued tokens, accounts made and refusals by errcode, per bucket of
the last day (hours) or week (six hours); see rules/stats.py and
storage/stats.py. Moderators may read it: it shows counts only, no address or
name.

A bucket that is over no longer changes (rows are written with the time they
are written at), so its counts are kept in memory and only the open bucket, and
buckets that closed since, are counted again: after the first look a page load
counts at most an hour or six of rows, whatever the history. Refusals are read
every time (a few rows per hour).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from synapse.module_api import ModuleApi

from synapse_email_gate.moderation.service import AdminError
from synapse_email_gate.rules.stats import RANGES, window
from synapse_email_gate.storage.stats import COUNTED, StatsStore

# A bucket counts as over this long after its end: clocks of the processes differ a little.
SETTLED_MS = 60_000
# Kept counts: the buckets of both ranges, for every series, with room to spare.
_MAX_KEPT = 4 * len(COUNTED) * sum(count for _, count in RANGES.values())

Key = tuple[str, int, int]  # series, bucket start, bucket end


class GateStats:
    def __init__(
        self,
        api: ModuleApi,
        store: StatsStore,
        before_read: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`before_read`: adds this process's refusal counts first, so the answer
        includes them without waiting for the next flush."""
        self._api = api
        self._store = store
        self._before_read = before_read
        self._settled: dict[Key, int] = {}

    async def picture(self, range_name: str | None) -> dict[str, object]:
        name = "day" if range_name is None else range_name
        if name not in RANGES:
            raise AdminError(400, "M_INVALID_PARAM", "range must be one of: day, week")
        if self._before_read is not None:
            await self._before_read()
        now = self._api.get_current_time_msec()
        win = window(name, now)
        keys = [(s, start, start + win.step_ms) for s in COUNTED for start in win.starts()]
        counts = dict(self._settled)
        counts.update(await self._store.counts([k for k in keys if k not in self._settled]))
        if len(self._settled) > _MAX_KEPT:
            self._settled.clear()
        for key in keys:
            if key[2] + SETTLED_MS <= now:
                self._settled[key] = counts[key]
        refusals = await self._store.refusals(win)

        def series(s: str) -> list[int]:
            return [counts[(s, start, start + win.step_ms)] for start in win.starts()]

        counted = {s: series(s) for s in COUNTED}
        buckets = []
        for i, start in enumerate(win.starts()):
            by_errcode = {reason: per[i] for reason, per in sorted(refusals.items()) if per[i]}
            buckets.append(
                {
                    "start_ts": start,
                    **{s: counted[s][i] for s in COUNTED},
                    "refused": sum(by_errcode.values()),
                    "refusals": by_errcode,
                }
            )
        refusal_totals = {reason: sum(per) for reason, per in sorted(refusals.items())}
        return {
            "range": name,
            "bucket_ms": win.step_ms,
            "from_ts": win.start_ms,
            "until_ts": win.end_ms,
            "now_ts": now,
            "totals": {
                **{s: sum(counted[s]) for s in COUNTED},
                "refused": sum(refusal_totals.values()),
                "refusals": refusal_totals,
            },
            "buckets": buckets,
        }
