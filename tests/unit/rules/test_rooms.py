"""When the bot may answer in the moderation room, and how people are shown there."""

from __future__ import annotations

import pytest

from synapse_email_gate.rules.rooms import (
    RoomFacts,
    mask_ban,
    mask_email,
    mask_ip,
    refusal,
    room_problems,
)

CLOSED = RoomFacts(join_rule="invite", federate=False, history_visibility="joined")


@pytest.mark.parametrize(
    "facts",
    [
        CLOSED,
        RoomFacts(join_rule="knock", federate=False, history_visibility="invited"),
    ],
)
def test_a_room_closed_to_all_but_moderators_is_fit(facts: RoomFacts) -> None:
    assert room_problems(facts) == []


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        (RoomFacts("public", False, "joined"), "the join rule is public, not invite or knock"),
        (RoomFacts("restricted", False, "joined"), "the join rule is restricted"),
        (RoomFacts("knock_restricted", False, "joined"), "the join rule is knock_restricted"),
        (RoomFacts(None, False, "joined"), "the join rule is not set"),
        (RoomFacts("invite", True, "joined"), '"m.federate": false'),
        (RoomFacts("invite", False, "shared"), "visible to shared, not to members only"),
        (RoomFacts("invite", False, "world_readable"), "visible to world_readable"),
        (RoomFacts("invite", False, None), "visible to shared"),
        (
            RoomFacts("invite", False, "joined", outsiders=("@z:x.org", "@a:x.org")),
            "these members are not moderators: @a:x.org, @z:x.org",
        ),
    ],
)
def test_each_opening_is_named(facts: RoomFacts, words: str) -> None:
    problems = room_problems(facts)
    assert len(problems) == 1 and words in problems[0], problems


def test_every_problem_is_named_at_once() -> None:
    problems = room_problems(RoomFacts("public", True, "world_readable", outsiders=("@a:x",)))
    assert len(problems) == 4
    text = refusal(problems)
    assert text.startswith("I do not answer commands in this room: the join rule is public")
    assert "admin API" in text


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("alice@example.org", "a•••@example.org"),
        ("a@example.org", "a•••@example.org"),
        ('"odd@local"@example.org', '"•••@example.org'),
        ("sha256:9f86d081884c7d65", "•••"),  # a keyed hash (privacy.hash_emails)
        (None, "•••"),
    ],
)
def test_addresses_are_masked(address: object, shown: str) -> None:
    assert mask_email(address) == shown


@pytest.mark.parametrize(
    ("ip", "shown"),
    [
        ("203.0.113.7", "203.0.113.x"),
        ("::ffff:203.0.113.7", "203.0.113.x"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::x"),
        ("2001:db8::1", "2001:db8:0::x"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("198.51.100.9/32", "198.51.100.x"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("not an ip", "•••"),
    ],
)
def test_ips_are_masked_to_their_network(ip: str, shown: str) -> None:
    assert mask_ip(ip) == shown


def test_bans_show_policy_but_not_a_person() -> None:
    assert mask_ban("email", "alice@example.org") == "a•••@example.org"
    assert mask_ban("email", "*@mailinator.com") == "*@mailinator.com"
    assert mask_ban("email", "/^spam.*@example\\.org$/") == "/^spam.*@example\\.org$/"
    assert mask_ban("ip", "203.0.113.7") == "203.0.113.x"
    assert mask_ban("ip", "203.0.113.0/24") == "203.0.113.0/24"
    assert mask_ban("username", "^admin") == "^admin"
