"""The picture of the gate for moderators: what `GET admin/stats` answers.

Requests, issued tokens, accounts made and refusals by errcode, per bucket of
the last day (hours) or week (six hours); see rules/stats.py and
storage/stats.py. Moderators may read it: it shows counts only, no address or
name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from synapse.module_api import ModuleApi

from synapse_email_gate.moderation.service import AdminError
from synapse_email_gate.rules.stats import RANGES, window
from synapse_email_gate.storage.stats import StatsStore


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

    async def picture(self, range_name: str | None) -> dict[str, object]:
        name = range_name or "day"
        if name not in RANGES:
            raise AdminError(400, "M_INVALID_PARAM", "range must be one of: day, week")
        if self._before_read is not None:
            await self._before_read()
        now = self._api.get_current_time_msec()
        win = window(name, now)
        series = await self._store.series(win)
        buckets = []
        for i, start in enumerate(win.starts()):
            refusals = {
                reason: counts[i] for reason, counts in sorted(series.refusals.items()) if counts[i]
            }
            buckets.append(
                {
                    "start_ts": start,
                    "requests": series.requests[i],
                    "tokens": series.tokens[i],
                    "accounts": series.accounts[i],
                    "refused": sum(refusals.values()),
                    "refusals": refusals,
                }
            )
        refusal_totals = {reason: sum(counts) for reason, counts in sorted(series.refusals.items())}
        return {
            "range": name,
            "bucket_ms": win.step_ms,
            "from_ts": win.start_ms,
            "until_ts": win.end_ms,
            "now_ts": now,
            "totals": {
                "requests": sum(series.requests),
                "tokens": sum(series.tokens),
                "accounts": sum(series.accounts),
                "refused": sum(refusal_totals.values()),
                "refusals": refusal_totals,
            },
            "buckets": buckets,
        }
