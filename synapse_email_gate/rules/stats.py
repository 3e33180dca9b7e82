"""The picture of the gate (admin/stats): which time buckets a range is drawn in.

Buckets are aligned to UTC hours (a day: 24 of one hour; a week: 28 of six
hours, starting at 00, 06, 12 and 18 UTC), so the refusal counts, kept per hour,
fall wholly into one bucket. The last bucket is the one now is in: it is still
filling.
"""

from __future__ import annotations

import attrs

HOUR_MS = 3_600_000


@attrs.frozen
class Window:
    name: str
    start_ms: int  # the first bucket's start
    step_ms: int
    count: int

    @property
    def end_ms(self) -> int:
        """The end of the last bucket (exclusive)."""
        return self.start_ms + self.step_ms * self.count

    def starts(self) -> list[int]:
        return [self.start_ms + i * self.step_ms for i in range(self.count)]

    def index(self, ts_ms: int) -> int | None:
        """The bucket `ts_ms` falls in, or None outside the window."""
        if ts_ms < self.start_ms or ts_ms >= self.end_ms:
            return None
        return (ts_ms - self.start_ms) // self.step_ms


# name -> (bucket length, number of buckets)
RANGES: dict[str, tuple[int, int]] = {
    "day": (HOUR_MS, 24),
    "week": (6 * HOUR_MS, 28),
}


def window(name: str, now_ms: int) -> Window:
    """The buckets of range `name` ("day" or "week") ending with the one holding now.

    Raises KeyError for another name."""
    step_ms, count = RANGES[name]
    last = now_ms - now_ms % step_ms
    return Window(name, last - (count - 1) * step_ms, step_ms, count)


def hour_of(ts_ms: int) -> int:
    """The start of the UTC hour `ts_ms` is in."""
    return ts_ms - ts_ms % HOUR_MS
