"""The picture's buckets: aligned to UTC hours, the last one holding now."""

from __future__ import annotations

import pytest

from synapse_email_gate.rules.stats import HOUR_MS, hour_of, window

# 2026-12-08 14:37:12.345 UTC
NOW = 1_796_740_632_345


def test_a_day_is_24_hours_ending_with_the_current_hour() -> None:
    day = window("day", NOW)
    assert (day.step_ms, day.count) == (HOUR_MS, 24)
    assert day.starts()[-1] == hour_of(NOW) <= NOW < day.end_ms
    assert day.start_ms == hour_of(NOW) - 23 * HOUR_MS
    assert day.start_ms % HOUR_MS == 0


def test_a_week_is_28_buckets_of_six_hours_at_00_06_12_18_utc() -> None:
    week = window("week", NOW)
    assert (week.step_ms, week.count) == (6 * HOUR_MS, 28)
    assert all(start % (6 * HOUR_MS) == 0 for start in week.starts())
    assert week.starts()[-1] <= NOW < week.end_ms
    assert week.end_ms - week.start_ms == 7 * 24 * HOUR_MS


def test_every_hour_falls_wholly_into_one_bucket() -> None:
    week = window("week", NOW)
    for hour in range(week.start_ms, week.end_ms, HOUR_MS):
        assert week.index(hour) == week.index(hour + HOUR_MS - 1)


def test_index_places_times_and_refuses_outside_the_window() -> None:
    day = window("day", NOW)
    assert day.index(NOW) == 23
    assert day.index(day.start_ms) == 0
    assert day.index(day.start_ms - 1) is None
    assert day.index(day.end_ms) is None


def test_an_unknown_range_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        window("month", NOW)
