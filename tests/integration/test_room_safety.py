"""The moderation room against a real Synapse, with real users talking through
matrix-nio: the bot answers only in a room closed to all but moderators, never
shows a token mailed to a person, masks addresses and IPs, and re-checks the
room whenever its state changes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import register, registered, request_token
from tests.integration.matrix import BOT, MatrixUser, wait_for_bot_line

ALIAS = "#moderation:test.local"
ANSWERING_AGAIN = "I answer commands"
# What a token (ours or a guess at one) looks like in a message.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9._~-]{12,64}")


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@mod:test.local"],
        "moderation_room": ALIAS,
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "mod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: MatrixUser) -> str:
    """Invite-only, closed to other servers, history for members since they joined."""
    room_id = mod.open_moderation_room()
    return room_id


def test_a_closed_room_gets_invite_tokens_but_no_mailed_token_and_masked_people(
    synapse: SynapseServer, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    mailed = request_token(synapse, mailbox, "roomalice", "alice.smith@example.org", "203.0.113.7")
    created = mod.ask_bot(room, "!gate token create 1 7d")
    invite = re.search(r"Token (\S+):", created)
    assert invite, created

    listing = mod.ask_bot(room, "!gate token list")
    assert invite.group(1) in listing
    assert mailed not in listing

    rows = mod.ask_bot(room, "!gate list issued")
    row = next((line for line in rows.splitlines() if "@roomalice" in line), None)
    assert row is not None, rows
    assert "203.0.113.x" in row and "203.0.113.7" not in rows
    shown = mod.ask_bot(room, f"!gate show {row.split()[0]}")
    assert "Address: a•••@example.org" in shown and "IP: 203.0.113.x" in shown
    assert "alice.smith" not in shown and "203.0.113.7" not in shown

    assert not any(mailed in line for line in mod.bot_lines(room))
    assert registered(register(synapse, "roomalice", mailed))


def test_a_member_who_is_not_a_moderator_silences_the_bot_and_takes_over_nothing(
    synapse: SynapseServer, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    mailed = request_token(synapse, mailbox, "roombob", "bob@example.org")
    outsider = MatrixUser(synapse, "outsider")
    seen = len(mod.bot_lines(room))
    mod.invite(room, outsider.user_id)
    # Invited is enough: with `invited` history they could read on from here.
    wait_for_bot_line(mod, room, "not moderators: @outsider:test.local", after=seen)
    outsider.join(room)

    # Help holds nothing secret: it is answered to everyone, in any room.
    assert "!gate approve ID" in outsider.ask_bot(room, "!gate help")
    for command in ("!gate token list", "!gate list issued", "!gate bans"):
        reply = mod.ask_bot(room, command)
        assert reply.startswith("I do not answer commands in this room"), reply
        assert "these members are not moderators: @outsider:test.local" in reply
        assert mailed not in reply and "roombob" not in reply
    assert "only moderators" in outsider.ask_bot(room, "!gate token list")

    # The attack: use whatever the room shows as a token for the reserved name.
    readable = " ".join(outsider.bot_lines(room))
    for candidate in set(TOKEN_LIKE.findall(readable)):
        assert not registered(register(synapse, "roombob", candidate)), candidate
    assert registered(register(synapse, "roombob", mailed))

    seen = len(mod.bot_lines(room))
    mod.kick(room, outsider.user_id)
    wait_for_bot_line(mod, room, ANSWERING_AGAIN, after=seen)
    assert answers(mod, room)


def answers(mod: MatrixUser, room: str) -> bool:
    """The bot runs a moderator's command in this room (help is answered anywhere)."""
    return not mod.ask_bot(room, "!gate bans").startswith("I do not answer commands")


@pytest.mark.parametrize(
    ("event_type", "unfit", "words"),
    [
        ("m.room.history_visibility", {"history_visibility": "world_readable"}, "world_readable"),
        ("m.room.history_visibility", {"history_visibility": "shared"}, "visible to shared"),
        ("m.room.join_rules", {"join_rule": "public"}, "the join rule is public"),
        ("m.room.join_rules", {"join_rule": "restricted", "allow": []}, "join rule is restricted"),
    ],
)
def test_history_beyond_members_or_an_open_join_rule_silences_the_bot(
    mod: MatrixUser, room: str, event_type: str, unfit: dict[str, Any], words: str
) -> None:
    fit = (
        {"history_visibility": "joined"}
        if event_type == "m.room.history_visibility"
        else {"join_rule": "invite"}
    )
    seen = len(mod.bot_lines(room))
    mod.put_state(room, event_type, unfit)
    wait_for_bot_line(mod, room, re.escape(words), after=seen)
    reply = mod.ask_bot(room, "!gate bans")
    assert reply.startswith("I do not answer commands in this room") and words in reply

    seen = len(mod.bot_lines(room))
    mod.put_state(room, event_type, fit)
    wait_for_bot_line(mod, room, ANSWERING_AGAIN, after=seen)
    assert answers(mod, room)


def test_knock_and_invited_history_are_closed_enough(mod: MatrixUser, room: str) -> None:
    mod.put_state(room, "m.room.join_rules", {"join_rule": "knock"})
    mod.put_state(room, "m.room.history_visibility", {"history_visibility": "invited"})
    try:
        assert answers(mod, room)
    finally:
        mod.put_state(room, "m.room.join_rules", {"join_rule": "invite"})
        mod.put_state(room, "m.room.history_visibility", {"history_visibility": "joined"})


def test_a_federated_room_is_refused_and_the_bot_follows_the_alias_to_a_new_one(
    mod: MatrixUser, room: str
) -> None:
    federated = mod.create_room(federate=True)
    mod.move_alias(ALIAS, federated)
    try:
        mod.invite(federated, BOT)
        notice = wait_for_bot_line(mod, federated, "users of other servers may join")
        assert '"m.federate": false' in notice
        reply = mod.ask_bot(federated, "!gate token list")
        assert reply.startswith("I do not answer commands in this room")
        assert "users of other servers may join" in reply
    finally:
        mod.move_alias(ALIAS, room)
    assert answers(mod, room)


def test_only_server_admins_change_who_moderates_or_make_unlimited_tokens(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    refused = mod.ask_bot(room, "!gate moderators allow @helper:test.local")
    assert refused == "Refused: only server admins may change who moderates"
    for command, what in (
        ("!gate token create unlimited 7d", "unlimited uses"),
        ("!gate token create 5 never", "never expire"),
    ):
        reply = mod.ask_bot(room, command)
        assert reply.startswith("Refused: only server admins may create tokens"), reply
        assert what in reply

    boss = MatrixUser(synapse, "roomboss", admin=True)
    mod.invite(room, boss.user_id)
    boss.join(room)
    refused = boss.ask_bot(room, "!gate moderators allow .*")
    assert refused.startswith("Refused: the regex '.*' must end in :test\\.local$"), refused
    assert boss.ask_bot(room, "!gate moderators allow @helper:test.local") == (
        "Allowed @helper:test.local."
    )
    assert "@helper:test.local" in boss.ask_bot(room, "!gate moderators")
    assert boss.ask_bot(room, "!gate moderators disallow @helper:test.local") == (
        "Disallowed @helper:test.local."
    )
    unlimited = boss.ask_bot(room, "!gate token create unlimited never")
    assert "unlimited use(s), expires never" in unlimited, unlimited
