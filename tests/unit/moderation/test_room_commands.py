"""Room commands without a room: the prefix, and the `token delete-all` and
`purge` phrases (their one try and their minute). The commands themselves run against a real
Synapse in tests/integration/test_moderation_room.py."""

from __future__ import annotations

import asyncio
from typing import cast

from synapse_email_gate.moderation.room_commands import (
    CONFIRM_WITHIN_S,
    RoomCommands,
    is_help,
    parse,
)
from synapse_email_gate.moderation.service import ModerationService
from synapse_email_gate.moderation.stats import GateStats


def test_a_command_starts_with_the_configured_prefix_as_a_word() -> None:
    assert parse("!reg token list", "!reg") == ["token", "list"]
    assert parse("  !reg  ", "!reg") == []
    assert parse("!gate token list", "!reg") is None
    assert parse("!register now", "!reg") is None
    assert parse("!gate token delete-all 'a b'") == ["token", "delete-all", "a b"]
    assert is_help([]) and is_help(["help"]) and not is_help(["token", "help"])


def test_the_help_names_the_configured_prefix() -> None:
    commands = RoomCommands(cast(ModerationService, object()), "!reg")
    assert "!reg token delete-all" in commands.help and "!gate" not in commands.help


def test_the_delete_all_phrase_works_once_and_within_a_minute() -> None:
    now = [1000.0]
    # The service is never reached: no phrase is accepted here.
    commands = RoomCommands(cast(ModerationService, object()), clock=lambda: now[0])

    def say(*words: str, actor: str = "@mod:example.org") -> str:
        return asyncio.run(commands.run(actor, list(words)))

    asked = say("token", "delete-all")
    phrase = asked.rsplit(" ", 1)[1]
    assert len(phrase) == 8 and "!gate token delete-all " + phrase in asked
    # Another moderator cannot use it.
    assert "No confirmation is waiting" in say("token", "delete-all", phrase, actor="@b:x.org")
    now[0] += CONFIRM_WITHIN_S + 1
    assert "No confirmation is waiting" in say("token", "delete-all", phrase)

    phrase = say("token", "delete-all").rsplit(" ", 1)[1]
    assert "not the confirmation phrase" in say("token", "delete-all", phrase + "x")
    assert "No confirmation is waiting" in say("token", "delete-all", phrase)


class _PurgeOnly:
    """The one service method `purge` reaches; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []

    async def purge(self, actor: str, body: dict[str, object]) -> dict[str, object]:
        self.calls.append((actor, body))
        return {"counts": {"requests": 2, "used_challenges": 1}}


def test_the_purge_phrase_confirms_its_own_age_once_for_its_moderator_within_a_minute() -> None:
    now = [1000.0]
    service = _PurgeOnly()
    commands = RoomCommands(cast(ModerationService, service), clock=lambda: now[0])

    def say(*words: str, actor: str = "@ops:example.org") -> str:
        return asyncio.run(commands.run(actor, list(words)))

    asked = say("purge", "30d")
    assert "tightened to 30d would delete: 2 requests, 1 used challenges" in asked, asked
    assert service.calls == [("@ops:example.org", {"dry_run": True, "older_than": "30d"})]
    phrase = asked.rsplit(" ", 1)[1]
    assert "!gate purge confirm " + phrase in asked
    assert "No confirmation is waiting" in say("purge", "confirm", phrase, actor="@b:x.org")
    assert say("purge", "confirm", phrase) == "Purged: 2 requests, 1 used challenges."
    assert service.calls[-1] == ("@ops:example.org", {"dry_run": False, "older_than": "30d"})
    assert "No confirmation is waiting" in say("purge", "confirm", phrase)

    phrase = say("purge").rsplit(" ", 1)[1]
    assert service.calls[-1] == ("@ops:example.org", {"dry_run": True})
    now[0] += CONFIRM_WITHIN_S + 1
    assert "No confirmation is waiting" in say("purge", "confirm", phrase)
    assert "Usage: !gate purge [AGE]" in say("purge", "30d", "extra")
    assert len(service.calls) == 3  # neither late nor malformed asks reached the service


class _Picture:
    """GateStats' one method `stats` reaches; records the range it was asked."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    async def picture(self, range_name: str | None) -> dict[str, object]:
        self.asked.append(range_name)
        totals = {"requests": 3, "tokens": 1, "accounts": 0, "refused": 0, "refusals": {}}
        return {"range": range_name or "day", "from_ts": 1_767_225_600_000, "totals": totals}


def test_stats_without_refusals_is_one_line_and_passes_the_range_on() -> None:
    picture = _Picture()
    commands = RoomCommands(cast(ModerationService, object()), stats=cast(GateStats, picture))
    said = asyncio.run(commands.run("@mod:example.org", ["stats"]))
    assert said == (
        "Last day (since 2026-01-01 00:00 UTC): 3 request(s), 1 token(s) issued,"
        " 0 account(s) made, 0 refused."
    )
    asyncio.run(commands.run("@mod:example.org", ["stats", "week"]))
    assert picture.asked == [None, "week"]
