"""RefusalTally (requests/refusal_tally.py) on a real SQLite database without Synapse:
counted in memory, written by flush under the flush's hour, kept when a write fails,
and the stats service (moderation/stats.py) reading them back with the counts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from synapse_email_gate.moderation.stats import GateStats
from synapse_email_gate.requests.refusal_tally import RefusalTally
from synapse_email_gate.rules.stats import HOUR_MS, hour_of
from synapse_email_gate.storage.runner import Runner
from synapse_email_gate.storage.stats import StatsStore
from tests.unit.fake_api import FakeApi


def tally(tmp_path: Path) -> tuple[RefusalTally, FakeApi, StatsStore]:
    api = FakeApi(tmp_path / "tally.db")
    store = StatsStore(Runner(api))  # type: ignore[arg-type]
    return RefusalTally(store, api.get_current_time_msec), api, store


def rows(api: FakeApi) -> list[tuple[Any, ...]]:
    return api.connection.execute(
        "SELECT hour_ts, reason, count FROM email_gate_refusals ORDER BY hour_ts, reason"
    ).fetchall()


def test_counts_are_written_at_flush_under_its_hour_and_added_up(tmp_path: Path) -> None:
    t, api, _ = tally(tmp_path)
    for _ in range(3):
        t.count("M_LIMIT_EXCEEDED")
    t.count("M_FORBIDDEN")
    assert rows(api) == []  # nothing is written on the hot path
    asyncio.run(t.flush())
    hour = hour_of(api.now)
    assert rows(api) == [(hour, "M_FORBIDDEN", 1), (hour, "M_LIMIT_EXCEEDED", 3)]
    t.count("M_LIMIT_EXCEEDED")
    asyncio.run(t.flush())
    api.now += HOUR_MS
    t.count("M_LIMIT_EXCEEDED")
    asyncio.run(t.flush())
    assert rows(api) == [
        (hour, "M_FORBIDDEN", 1),
        (hour, "M_LIMIT_EXCEEDED", 4),
        (hour + HOUR_MS, "M_LIMIT_EXCEEDED", 1),
    ]
    before = len(api.transactions)
    asyncio.run(t.flush())  # nothing counted: no transaction
    assert len(api.transactions) == before


def test_a_failed_write_keeps_the_counts_for_the_next_flush(tmp_path: Path) -> None:
    t, api, _ = tally(tmp_path)
    t.count("M_FORBIDDEN")
    api.connection.execute("ALTER TABLE email_gate_refusals RENAME TO moved")
    asyncio.run(t.flush())  # logged, not raised
    t.count("M_FORBIDDEN")
    api.connection.execute("ALTER TABLE moved RENAME TO email_gate_refusals")
    asyncio.run(t.flush())
    assert rows(api) == [(hour_of(api.now), "M_FORBIDDEN", 2)]


def test_unforeseen_reasons_beyond_the_bound_count_as_other(tmp_path: Path) -> None:
    t, api, _ = tally(tmp_path)
    for n in range(250):
        t.count(f"R{n}")
    asyncio.run(t.flush())
    counted = {reason: count for _, reason, count in rows(api)}
    assert len(counted) == 201
    assert counted["other"] == 50
    assert sum(counted.values()) == 250


def test_the_picture_includes_what_this_process_counted(tmp_path: Path) -> None:
    t, api, store = tally(tmp_path)
    stats = GateStats(api, store, t.flush)  # type: ignore[arg-type]
    t.count("EMAIL_GATE_USERNAME_BANNED")
    picture: dict[str, Any] = asyncio.run(stats.picture("day"))
    assert picture["totals"]["refusals"] == {"EMAIL_GATE_USERNAME_BANNED": 1}
    assert picture["buckets"][-1]["refused"] == 1


def test_counts_of_buckets_that_are_over_are_kept(tmp_path: Path) -> None:
    """A bucket over for a minute is counted once; the open one every time."""
    _, api, store = tally(tmp_path)
    stats = GateStats(api, store)  # type: ignore[arg-type]
    insert = "INSERT INTO email_gate_tokens (token, kind, created_ts) VALUES (?, 'invite', ?)"
    api.connection.execute(insert, ("old", api.now - 2 * HOUR_MS))
    api.connection.execute(insert, ("new", api.now))
    api.connection.commit()
    first: dict[str, Any] = asyncio.run(stats.picture("day"))
    assert first["totals"]["tokens"] == 2
    # Only the open bucket is counted again: a row stamped in a closed one (which
    # the module never writes) is not seen; one in the open bucket is.
    api.connection.execute(insert, ("late", api.now - 2 * HOUR_MS))
    api.connection.execute(insert, ("newer", api.now))
    api.connection.commit()
    again: dict[str, Any] = asyncio.run(stats.picture("day"))
    assert again["totals"]["tokens"] == 3
    assert again["buckets"][-1]["tokens"] == 2
