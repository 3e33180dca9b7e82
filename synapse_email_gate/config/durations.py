"""Durations and moments as people write and read them: `24h` in the config,
`24 hours` in messages, `2026-01-31 18:05 UTC` on pages, in mails and in the CLI.

Imports nothing of Synapse: the command-line tool formats with it too.
"""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# The units a duration is described in, largest first (seconds).
_UNITS_S = ((86_400, "days"), (3600, "hours"), (60, "minutes"))


def parse_duration_ms(value: object) -> int:
    """`45s`, `15m`, `24h`, `7d`, `2w`, `500ms`, or an integer of seconds -> milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 45s, 15m, 24h or 7d, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value * 1000
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            number, unit = match.groups()
            return int(number) * _UNIT_MS[unit or "s"]
    raise ValueError(f"expected a duration like 45s, 15m, 24h or 7d, got {value!r}")


def format_duration(ms: int) -> str:
    """The inverse of parse_duration_ms, for docs and messages: 86400000 -> `24h`."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def in_units(ms: int) -> tuple[int, str]:
    """`86400000` -> `(1, "days")`: the largest whole unit that fits (`days`,
    `hours`, `minutes`, `seconds`), rounded once it fits twice."""
    seconds = max(0, ms // 1000)
    for size, unit in _UNITS_S:
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            return round(seconds / size), unit
    return seconds, "seconds"


def describe_duration(ms: int) -> str:
    """`86400000` -> `1 day`, in English (pages and mails use Translator.duration)."""
    count, unit = in_units(ms)
    return f"{count} {unit if count != 1 else unit[:-1]}"


def format_utc(ts_ms: int | float) -> str:
    """Milliseconds since the epoch -> `2026-01-31 18:05 UTC`."""
    moment = datetime.datetime.fromtimestamp(ts_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
