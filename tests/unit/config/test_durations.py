"""The one place durations and moments are written: config keys, messages, pages and
the CLI all print them alike."""

from __future__ import annotations

import pytest

from synapse_email_gate.config.durations import (
    describe_duration,
    format_duration,
    format_utc,
    in_units,
    parse_duration_ms,
)

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


@pytest.mark.parametrize("text", ["45s", "15m", "36h", "6d", "2w", "500ms"])
def test_format_duration_writes_what_parse_reads(text: str) -> None:
    assert format_duration(parse_duration_ms(text)) == text


@pytest.mark.parametrize(
    ("ms", "units", "words"),
    [
        (DAY, (1, "days"), "1 day"),
        (36 * HOUR, (36, "hours"), "36 hours"),  # not a whole day, and less than two
        (50 * HOUR, (2, "days"), "2 days"),  # rounded once it fits twice
        (90 * MINUTE, (90, "minutes"), "90 minutes"),
        (1000, (1, "seconds"), "1 second"),
        (-5, (0, "seconds"), "0 seconds"),
    ],
)
def test_a_duration_is_said_in_the_largest_unit_that_fits(
    ms: int, units: tuple[int, str], words: str
) -> None:
    assert in_units(ms) == units
    assert describe_duration(ms) == words


def test_moments_are_written_in_utc_to_the_minute() -> None:
    assert format_utc(0) == "1970-01-01 00:00 UTC"
    assert format_utc(1_800_000_059_999) == "2027-01-15 08:00 UTC"
