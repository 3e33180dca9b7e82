"""Commands in a Matrix room, against a real Synapse, with users talking through
matrix-nio: the bot joins when invited, posts pending requests, and answers
moderators exactly once."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    confirm_address,
    register,
    registered,
    token_from,
    token_valid,
)
from tests.integration.matrix import MatrixUser, wait_for_bot_line, wait_until

SYNAPSE_DATABASES = ["sqlite"]
REASON = "I run the local chess club and we want to move our chat here."


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@mod:test.local"],
        "moderation_room": "#moderation:test.local",
        "approval": "required",
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "mod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: MatrixUser) -> str:
    room_id = mod.open_moderation_room()
    return room_id


def ask_for_approval(synapse: SynapseServer, mailbox: SmtpCatcher, username: str) -> None:
    """A request whose address is confirmed: it now waits for a moderator."""
    email = f"{username}@example.org"
    answer = http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": email, "reason": REASON},
    )
    assert answer.status == 202
    assert confirm_address(synapse, mailbox.wait_for(lambda m: m.to == email)).status == 200


def test_help_lists_the_commands(mod: MatrixUser, room: str) -> None:
    reply = mod.ask_bot(room, "!gate help")
    assert "!gate approve ID" in reply and "!gate token create" in reply


def test_a_token_created_in_the_room_registers_an_account(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    reply = mod.ask_bot(room, "!gate token create 1 7d")
    match = re.search(r"Token (\S+):", reply)
    assert match, reply
    assert registered(register(synapse, "roominvited", match.group(1)))
    listed = mod.ask_bot(room, "!gate token list")
    assert match.group(1) not in listed
    # Who made it and what it made; and the other way, from the account.
    shown = mod.ask_bot(room, f"!gate token show {match.group(1)}")
    assert "(invite, used): 1 of 1 used, 0 left" in shown, shown
    assert "Made by @mod:test.local" in shown, shown
    assert "- @roominvited:test.local (from 127.0.0.x)" in shown, shown
    account = mod.ask_bot(room, "!gate account @roominvited:test.local")
    assert f"invite token {match.group(1)}, made by @mod:test.local" in account, account


def test_non_moderators_are_refused_and_no_request_is_announced_to_them(
    synapse: SynapseServer, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    outsider = MatrixUser(synapse, "outsider")
    mod.invite(room, outsider.user_id)
    outsider.join(room)
    assert "only moderators" in outsider.ask_bot(room, "!gate token create")

    ask_for_approval(synapse, mailbox, "unseenapplicant")
    wait_until(
        lambda: re.search(r"request \S+ not announced: .*@outsider", synapse.log_text()),
        "the announcement to be withheld",
    )
    assert not any("unseenapplicant" in line for line in outsider.bot_lines(room))

    seen = len(mod.bot_lines(room))
    mod.kick(room, outsider.user_id)
    wait_for_bot_line(mod, room, "I answer commands", after=seen)
    assert "@unseenapplicant" in mod.ask_bot(room, "!gate list")


def test_pending_requests_are_posted_and_approved_from_the_room(
    synapse: SynapseServer, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    ask_for_approval(synapse, mailbox, "roomapplicant")
    announced = wait_for_bot_line(mod, room, "roomapplicant")
    assert REASON in announced
    request_id = re.search(r"New request (\S+):", announced)
    assert request_id
    reply = mod.ask_bot(room, f"!gate approve {request_id.group(1)}")
    assert "issued" in reply
    email = "roomapplicant@example.org"
    token = token_from(mailbox.wait_for(lambda m: m.to == email and "Registration token" in m.text))
    assert registered(register(synapse, "x", token))


def test_bans_from_the_room_apply(synapse: SynapseServer, mod: MatrixUser, room: str) -> None:
    reply = mod.ask_bot(room, "!gate ban username ^roomspam bot wave")
    assert "Banned username" in reply
    refused = http.post(
        synapse.gate_url + "api/request",
        json={"username": "roomspam1", "email": "rs@example.org", "reason": REASON},
    )
    assert refused.status == 400 and refused.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"


def test_a_stored_email_ban_is_masked_in_the_room(mod: MatrixUser, room: str) -> None:
    mod.ask_bot(room, "!gate ban email someone.exact@example.net doxxing")
    mod.ask_bot(room, "!gate ban ip 203.0.113.99")
    listing = mod.ask_bot(room, "!gate bans")
    assert "s•••@example.net" in listing and "someone.exact" not in listing
    assert "203.0.113.x" in listing and "203.0.113.99" not in listing


def test_help_is_answered_to_anyone_in_the_room(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    guest = MatrixUser(synapse, "helpguest")
    mod.invite(room, guest.user_id)
    guest.join(room)
    help_text = guest.ask_bot(room, "!gate help")
    assert "!gate token delete-all" in help_text and "help for everyone" in help_text
    assert "only moderators" in guest.ask_bot(room, "!gate token list")
    seen = len(mod.bot_lines(room))
    mod.kick(room, guest.user_id)
    wait_for_bot_line(mod, room, "I answer commands", after=seen)


def test_invite_tokens_are_edited_disabled_and_enabled_from_the_room(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    created = mod.ask_bot(room, "!gate token create 1 7d")
    match = re.search(r"Token (\S+):", created)
    assert match, created
    token = match.group(1)
    assert f"Invite link: {synapse.gate_url}register?token={token}" in created, created
    assert f"register?token={token}" in mod.ask_bot(room, f"!gate token show {token}")

    assert f"Token {token} is disabled now." == mod.ask_bot(room, f"!gate token disable {token}")
    refused = register(synapse, "roomdisabled", token)
    assert not registered(refused)
    assert f"Token {token} is active now." == mod.ask_bot(room, f"!gate token enable {token}")

    edited = mod.ask_bot(room, f"!gate token edit {token} uses=3 expiry=2d")
    assert "0 of 3 used, 3 left" in edited, edited
    assert "uses=N" in mod.ask_bot(room, f"!gate token edit {token} colour=red")
    assert registered(register(synapse, "roomedited", token))
    assert registered(register(synapse, "roomeditedtoo", token))
    below = mod.ask_bot(room, f"!gate token edit {token} uses=1")
    assert below.startswith("Refused: uses_allowed cannot be below the 2 use(s)"), below


# Last in this file: it deletes every token of the module's server.
def test_delete_all_asks_for_a_one_time_phrase_first(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    kept = re.search(r"Token (\S+):", mod.ask_bot(room, "!gate token create 1 7d"))
    assert kept
    asked = mod.ask_bot(room, "!gate token delete-all")
    phrase = re.search(r"!gate token delete-all (\S+)$", asked)
    assert phrase and "EVERY registration token" in asked, asked
    wrong = mod.ask_bot(room, "!gate token delete-all not-the-phrase")
    assert "nothing was deleted" in wrong
    # The phrase was good for one try only.
    assert "No confirmation is waiting" in mod.ask_bot(
        room, f"!gate token delete-all {phrase.group(1)}"
    )
    assert token_valid(synapse.base_url, kept.group(1))

    asked = mod.ask_bot(room, "!gate token delete-all")
    phrase = re.search(r"!gate token delete-all (\S+)$", asked)
    assert phrase, asked
    done = mod.ask_bot(room, f"!gate token delete-all {phrase.group(1)}")
    assert re.fullmatch(r"Deleted \d+ token\(s\)\.", done), done
    assert not token_valid(synapse.base_url, kept.group(1))
    assert mod.ask_bot(room, "!gate token list") == "No valid invite tokens."


def test_the_command_prefix_is_configurable(make_synapse: Any) -> None:
    server: SynapseServer = make_synapse(
        {
            "moderators": ["@prefixmod:test.local"],
            "moderation_room": "#prefixed:test.local",
            "command_prefix": "!reg",
        }
    )
    moderator = MatrixUser(server, "prefixmod")
    room_id = moderator.open_moderation_room("prefixed")
    help_text = moderator.ask_bot(room_id, "!reg help")
    assert "!reg token create" in help_text and "!gate" not in help_text
    moderator.say(room_id, "!gate token list")  # not a command here
    created = moderator.ask_bot(room_id, "!reg token create 1 7d")
    assert created.startswith("Token "), created
    assert not any("No valid invite tokens" in line for line in moderator.bot_lines(room_id))
