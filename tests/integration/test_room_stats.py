"""`stats [day|week]` in the moderation room against a real Synapse, on SQLite and
PostgreSQL: the totals of `GET admin/stats` (the same GateStats path), as text,
for moderators; a bad range or extra words are named."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_email_gate.config.durations import format_utc
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from
from tests.integration.matrix import MatrixUser, wait_until


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "banned_usernames": ["^spammer"],
        "moderators": ["@statmod:test.local"],
        "moderation_room": "#statroom:test.local",
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "statmod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: MatrixUser) -> str:
    room_id = mod.open_moderation_room("statroom")
    return room_id


def stats(synapse: SynapseServer, token: str, range_name: str) -> dict[str, Any]:
    answer = http.get(
        synapse.gate_url + f"admin/stats?range={range_name}", headers=synapse.auth_headers(token)
    )
    assert answer.status == 200, answer
    body: dict[str, Any] = answer.json()
    return body


def test_stats_answers_the_totals_of_the_admin_api(
    synapse: SynapseServer, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    for name in ("counted1", "counted2"):
        assert ask_from(synapse, name, f"{name}@example.org", "10.7.0.1").status == 202
    for name in ("spammer1", "spammer2"):
        answer = ask_from(synapse, name, f"{name}@example.org", "10.7.0.2")
        assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED", answer
    assert ask_from(synapse, "counted3", "not-an-address", "10.7.0.2").status == 400
    # Tokens are issued after the answer: wait for both before comparing pictures.
    wait_until(
        lambda: stats(synapse, mod.access_token, "day")["totals"]["tokens"] == 2,
        "both tokens issued",
    )

    for words, range_name in (("!gate stats", "day"), ("!gate stats week", "week")):
        before = stats(synapse, mod.access_token, range_name)
        reply = mod.ask_bot(room, words)
        after = stats(synapse, mod.access_token, range_name)
        totals = after["totals"]
        assert totals == before["totals"]
        assert (totals["requests"], totals["tokens"], totals["refused"]) == (2, 2, 3)
        # Either picture's start: an hour may begin between them.
        assert reply in {
            f"Last {range_name} (since {format_utc(picture['from_ts'])}):"
            " 2 request(s), 2 token(s) issued, 0 account(s) made, 3 refused.\n"
            "Refusals: EMAIL_GATE_USERNAME_BANNED 2, EMAIL_GATE_INVALID_EMAIL 1."
            for picture in (before, after)
        }, reply


def test_a_bad_range_and_extra_words_are_named(mod: MatrixUser, room: str) -> None:
    assert mod.ask_bot(room, "!gate stats month") == "Refused: range must be one of: day, week"
    reply = mod.ask_bot(room, "!gate stats day week")
    assert reply.startswith("Usage: !gate stats [day|week]"), reply


def test_the_room_help_lists_stats(mod: MatrixUser, room: str) -> None:
    assert "!gate stats [day|week]" in mod.ask_bot(room, "!gate help")
