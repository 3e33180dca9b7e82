"""GET admin/stats on a real Synapse: requests, issued tokens, accounts and refusals
by errcode over the last day and week, on SQLite and PostgreSQL.

The server is shared by the tests of this file, so each compares the picture
before and after what it did (its own client addresses, behind a trusted proxy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    ask_from,
    db_execute,
    post_form,
    register,
    registered,
    token_from,
    wait_until,
)
from tests.integration.test_cli import as_json, ok, together

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "banned_usernames": ["^spammer"],
        "moderators": ["@mod:test.local"],
        "rate_limits": {
            "per_ip": {"burst": 2, "per_second": 0.0001},
            "global": {"burst": 1000, "per_second": 100},
        },
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


def stats(synapse: SynapseServer, token: str, range_name: str = "day") -> dict[str, Any]:
    answer = http.get(
        synapse.gate_url + f"admin/stats?range={range_name}", headers=synapse.auth_headers(token)
    )
    assert answer.status == 200, answer
    body: dict[str, Any] = answer.json()
    return body


def grown(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the totals grew by; refusals only for errcodes that grew."""
    b, a = before["totals"], after["totals"]
    refusals = {
        reason: count - b["refusals"].get(reason, 0)
        for reason, count in a["refusals"].items()
        if count != b["refusals"].get(reason, 0)
    }
    return {
        **{key: a[key] - b[key] for key in ("requests", "tokens", "accounts", "refused")},
        "refusals": refusals,
    }


def assert_buckets_add_up(picture: dict[str, Any]) -> None:
    totals = picture["totals"]
    for key in ("requests", "tokens", "accounts", "refused"):
        assert sum(b[key] for b in picture["buckets"]) == totals[key], key
    for reason, count in totals["refusals"].items():
        assert sum(b["refusals"].get(reason, 0) for b in picture["buckets"]) == count, reason


def test_requests_tokens_accounts_and_refusals_are_counted(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    day_before = stats(synapse, mod_token, "day")
    week_before = stats(synapse, mod_token, "week")

    for name in ("walker1", "walker2"):
        assert ask_from(synapse, name, f"{name}@example.org", "10.1.0.1").status == 202
    first = mailbox.wait_for(lambda m: m.to == "walker1@example.org")
    mailbox.wait_for(lambda m: m.to == "walker2@example.org")
    assert registered(register(synapse, "walker1", token_from(first)))
    for name in ("spammer1", "spammer2"):
        answer = ask_from(synapse, name, f"{name}@example.org", "10.1.0.2")
        assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED", answer
    # The form is counted like the JSON API.
    form = post_form(
        synapse, "spammer3", "spammer3@example.org", headers={"X-Forwarded-For": "10.1.0.2"}
    )
    assert form.status == 400, form
    assert ask_from(synapse, "walker3", "not-an-address", "10.1.0.2").status == 400
    for n in range(3):  # 10.1.0.1 spent its burst of 2
        answer = ask_from(synapse, f"walker{4 + n}", f"walker{4 + n}@example.org", "10.1.0.1")
        assert answer.status == 429, answer

    day, week = stats(synapse, mod_token, "day"), stats(synapse, mod_token, "week")
    expected = {
        "requests": 2,
        "tokens": 2,
        "accounts": 1,
        "refused": 7,
        "refusals": {
            "EMAIL_GATE_USERNAME_BANNED": 3,
            "EMAIL_GATE_INVALID_EMAIL": 1,
            "M_LIMIT_EXCEEDED": 3,
        },
    }
    assert grown(day_before, day) == expected
    assert grown(week_before, week) == expected
    assert_buckets_add_up(day)
    assert_buckets_add_up(week)


def test_the_day_is_hourly_and_the_week_six_hourly(synapse: SynapseServer, mod_token: str) -> None:
    day, week = stats(synapse, mod_token, "day"), stats(synapse, mod_token, "week")
    assert day["range"] == "day" and day["bucket_ms"] == HOUR_MS and len(day["buckets"]) == 24
    assert week["bucket_ms"] == 6 * HOUR_MS and len(week["buckets"]) == 28
    for picture in (day, week):
        starts = [b["start_ts"] for b in picture["buckets"]]
        assert starts == [picture["from_ts"] + i * picture["bucket_ms"] for i in range(len(starts))]
        assert starts[-1] <= picture["now_ts"] < picture["until_ts"]
        assert all(start % picture["bucket_ms"] == 0 for start in starts)
    # Without a range: the day.
    plain = http.get(synapse.gate_url + "admin/stats", headers=synapse.auth_headers(mod_token))
    assert plain.status == 200 and plain.json()["range"] == "day"


def test_counts_written_by_other_processes_are_added(
    synapse: SynapseServer, mod_token: str
) -> None:
    """Another worker's flush is a row in the table: the picture adds it up."""
    day_before, week_before = stats(synapse, mod_token, "day"), stats(synapse, mod_token, "week")
    now_hour = day_before["now_ts"] - day_before["now_ts"] % HOUR_MS
    upsert = """
        INSERT INTO email_gate_refusals (hour_ts, reason, count) VALUES (?, ?, ?)
        ON CONFLICT (hour_ts, reason) DO UPDATE SET count = email_gate_refusals.count + ?
    """
    db_execute(synapse, upsert, (now_hour, "M_FORBIDDEN", 5, 5))
    db_execute(synapse, upsert, (now_hour - 3 * 24 * HOUR_MS, "M_FORBIDDEN", 7, 7))
    db_execute(synapse, upsert, (now_hour - 9 * 24 * HOUR_MS, "M_FORBIDDEN", 11, 11))
    day, week = stats(synapse, mod_token, "day"), stats(synapse, mod_token, "week")
    assert grown(day_before, day)["refusals"] == {"M_FORBIDDEN": 5}
    assert grown(week_before, week)["refusals"] == {"M_FORBIDDEN": 12}
    assert day["buckets"][-1]["refusals"]["M_FORBIDDEN"] >= 5


def test_only_moderators_read_it_and_a_bad_range_is_named(
    synapse: SynapseServer, mod_token: str
) -> None:
    assert http.get(synapse.gate_url + "admin/stats").status == 401
    walker = synapse.register_user("plainwalker", "plain-password-1")
    assert (
        http.get(synapse.gate_url + "admin/stats", headers=synapse.auth_headers(walker)).status
        == 403
    )
    for bad in ("month", "", "DAY"):
        answer = http.get(
            synapse.gate_url + f"admin/stats?range={bad}", headers=synapse.auth_headers(mod_token)
        )
        assert answer.status == 400, bad
        assert answer.json() == {
            "errcode": "M_INVALID_PARAM",
            "error": "range must be one of: day, week",
        }


def test_the_cli_shows_the_same_picture(synapse: SynapseServer, mod_token: str) -> None:
    """`synapse-email-gate stats` drives the same endpoint: totals, errcodes, buckets."""
    assert ask_from(synapse, "spammer-cli", "cli@example.org", "10.1.0.4").status == 400
    expected = stats(synapse, mod_token, "week")
    shown, as_text = together(
        (synapse, mod_token, ("stats", "--range", "week", "--json")),
        (synapse, mod_token, ("stats", "--range", "week")),
    )
    answer = as_json(shown)
    assert answer["totals"] == expected["totals"] and len(answer["buckets"]) == 28
    text = ok(as_text)
    totals = expected["totals"]
    assert re.search(rf"^refused:\s+{totals['refused']}$", text, re.M), text
    banned = totals["refusals"]["EMAIL_GATE_USERNAME_BANNED"]
    assert re.search(rf"^  EMAIL_GATE_USERNAME_BANNED:\s+{banned}$", text, re.M), text
    assert "FROM" in text and "REFUSED" in text
    assert len(text.splitlines()) >= 28 + 6


def test_refusals_counted_in_memory_survive_a_restart(
    synapse: SynapseServer, mod_token: str
) -> None:
    """Written at shutdown (or by the last periodic flush), so a restart loses none.
    Last in this file: it restarts the shared server."""
    before = stats(synapse, mod_token, "day")
    for n in range(4):
        answer = ask_from(synapse, f"spammer-late{n}", f"late{n}@example.org", "10.1.0.3")
        assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
    synapse.stop()
    rows = synapse.query(
        "SELECT SUM(count) FROM email_gate_refusals WHERE reason = ?",
        ("EMAIL_GATE_USERNAME_BANNED",),
    )
    assert rows[0][0] == before["totals"]["refusals"].get("EMAIL_GATE_USERNAME_BANNED", 0) + 4
    synapse.start()
    after = stats(synapse, mod_token, "day")
    assert grown(before, after)["refusals"] == {"EMAIL_GATE_USERNAME_BANNED": 4}


def test_counts_not_flushed_yet_are_written_when_synapse_stops(
    make_synapse: Callable[..., SynapseServer], synapse_db: str
) -> None:
    """Refusals right after start, before the first periodic flush (10 s after the
    module is made), then SIGTERM: the shutdown trigger writes them."""
    fresh = make_synapse({"banned_usernames": ["^spammer"]}, db=synapse_db)
    for n in range(3):
        assert ask(fresh, f"spammer-stop{n}", f"stop{n}@example.org").status == 400
    fresh.stop()
    rows = fresh.query("SELECT reason, count FROM email_gate_refusals")
    assert rows == [("EMAIL_GATE_USERNAME_BANNED", 3)]


def test_counts_are_written_periodically_without_anyone_looking(
    make_synapse: Callable[..., SynapseServer], synapse_db: str
) -> None:
    """Every 10 s each process writes what it counted: other processes see it."""
    fresh = make_synapse({"banned_usernames": ["^spammer"]}, db=synapse_db)
    for n in range(2):
        assert ask(fresh, f"spammer-tick{n}", f"tick{n}@example.org").status == 400

    def written() -> bool:
        rows = fresh.query("SELECT reason, count FROM email_gate_refusals")
        return rows == [("EMAIL_GATE_USERNAME_BANNED", 2)]

    wait_until(written, "the periodic flush wrote the refusal counts", timeout=25)
