"""The picture's transactions (storage/stats.py) on real SQLite and PostgreSQL."""

from __future__ import annotations

from synapse_email_gate.rules.stats import HOUR_MS, window
from synapse_email_gate.storage.stats import (
    add_refusals_txn,
    counts_txn,
    purge_refusals_txn,
    refusals_txn,
)
from tests.storage.conftest import Txn

NOW = 1_800_000_000_000 + 30 * 60_000  # half past an hour
HOUR = NOW - NOW % HOUR_MS


def test_refusal_counts_add_up_by_upsert(txn: Txn) -> None:
    add_refusals_txn(txn, HOUR, {"M_LIMIT_EXCEEDED": 3, "M_FORBIDDEN": 1})
    add_refusals_txn(txn, HOUR, {"M_LIMIT_EXCEEDED": 2})
    add_refusals_txn(txn, HOUR - HOUR_MS, {"M_LIMIT_EXCEEDED": 7})
    txn.commit()
    day = window("day", NOW)
    refusals = refusals_txn(txn, day)
    assert refusals["M_LIMIT_EXCEEDED"][-1] == 5
    assert refusals["M_LIMIT_EXCEEDED"][-2] == 7
    assert refusals["M_FORBIDDEN"][-1] == 1
    assert sum(refusals["M_FORBIDDEN"]) == 1


def test_refusals_outside_the_window_are_left_out_and_purged(txn: Txn) -> None:
    day = window("day", NOW)
    add_refusals_txn(txn, day.start_ms - HOUR_MS, {"M_FORBIDDEN": 4})
    add_refusals_txn(txn, day.start_ms, {"M_FORBIDDEN": 1})
    assert refusals_txn(txn, day) == {"M_FORBIDDEN": [1] + [0] * 23}
    purge_refusals_txn(txn, day.start_ms)
    txn.execute("SELECT SUM(count) FROM email_gate_refusals")
    assert txn.fetchone()[0] == 1


def test_counts_are_per_half_open_range_and_accounts_only_when_used(txn: Txn) -> None:
    for n, ts in enumerate((HOUR - 1, HOUR, HOUR + 10, NOW)):
        txn.execute(
            "INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email,"
            " email_key, ip, lang, status) VALUES (?, ?, ?, ?, 'a@b.c', 'a@b.c', '::1', 'en',"
            " 'issued')",
            (f"r{n}", ts, ts, f"user{n}"),
        )
        txn.execute(
            "INSERT INTO email_gate_tokens (token, kind, created_ts) VALUES (?, 'email', ?)",
            (f"t{n}", ts),
        )
        txn.execute(
            "INSERT INTO email_gate_token_uses (localpart, token, state, claimed_ts,"
            " lease_until_ts, used_ts) VALUES (?, ?, ?, ?, 0, ?)",
            (f"user{n}", f"t{n}", "used" if n != 2 else "claimed", ts, ts),
        )
    txn.commit()
    wanted = [(s, HOUR, HOUR + HOUR_MS) for s in ("requests", "tokens", "accounts")]
    wanted.append(("requests", HOUR - HOUR_MS, HOUR))
    assert counts_txn(txn, wanted) == {
        ("requests", HOUR, HOUR + HOUR_MS): 3,
        ("tokens", HOUR, HOUR + HOUR_MS): 3,
        ("accounts", HOUR, HOUR + HOUR_MS): 2,
        ("requests", HOUR - HOUR_MS, HOUR): 1,
    }
