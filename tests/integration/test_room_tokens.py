"""Issue #16's room commands against a real Synapse, on SQLite and PostgreSQL:
`moderators allow|disallow|list` (changes for server admins only, with effect on
the admin API), `token show` in words (uses, left, expiry, who made it, the
accounts), expiry edits reaching Synapse's row, and word tokens made in the room."""

from __future__ import annotations

import re
from typing import Any

import pytest

from synapse_email_gate.rules.words import wordlist
from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import register, registered, token_valid
from tests.integration.matrix import BOT, MatrixUser, wait_until

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@tokmod:test.local"],
        "moderation_room": "#tokenroom:test.local",
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def ops(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "tokops", admin=True)


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "tokmod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, ops: MatrixUser, mod: MatrixUser) -> str:
    exists = lambda: http.get(synapse.url(f"/_matrix/client/v3/profile/{BOT}")).status == 200  # noqa: E731
    wait_until(exists, "the bot user")
    room_id = ops.create_room(alias="tokenroom", invite=(BOT, mod.user_id))
    mod.join(room_id)
    wait_until(lambda: BOT in ops.joined(room_id), "the bot to join")
    return room_id


def token_in(reply: str) -> str:
    match = re.search(r"Token (\S+):", reply)
    assert match, reply
    return match.group(1)


def test_only_server_admins_change_who_moderates_and_it_takes_effect(
    synapse: SynapseServer, ops: MatrixUser, mod: MatrixUser, room: str
) -> None:
    helper_token = synapse.register_user("tokhelper", "tokhelper-password-1")
    helper = "@tokhelper:test.local"
    admin_api = synapse.gate_url + "admin/requests"
    assert http.get(admin_api, headers=synapse.auth_headers(helper_token)).status == 403

    refused = mod.ask_bot(room, f"!gate moderators allow {helper}")
    assert refused == "Refused: only server admins may change who moderates", refused
    assert ops.ask_bot(room, f"!gate moderators allow {helper}") == f"Allowed {helper}."
    assert ops.ask_bot(room, f"!gate moderators allow {helper}") == f"{helper} was allowed already."
    assert http.get(admin_api, headers=synapse.auth_headers(helper_token)).status == 200
    # Listing is for every moderator; both spellings list.
    listed = mod.ask_bot(room, "!gate moderators list")
    assert f"{helper}  added by {ops.user_id}" in listed, listed
    assert mod.ask_bot(room, "!gate moderators") == listed

    elsewhere = ops.ask_bot(room, "!gate moderators allow @someone:elsewhere.example")
    assert elsewhere.startswith("Refused: "), elsewhere
    refused = mod.ask_bot(room, f"!gate moderators disallow {helper}")
    assert refused == "Refused: only server admins may change who moderates", refused
    assert ops.ask_bot(room, f"!gate moderators disallow {helper}") == f"Disallowed {helper}."
    assert http.get(admin_api, headers=synapse.auth_headers(helper_token)).status == 403
    assert mod.ask_bot(room, "!gate moderators list").startswith("No moderators added at run time")
    gone = ops.ask_bot(room, f"!gate moderators disallow {helper}")
    assert gone == "Refused: moderator entry not found", gone


def test_token_show_names_uses_left_expiry_maker_and_accounts(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    token = token_in(mod.ask_bot(room, "!gate token create 3 7d"))
    assert registered(register(synapse, "tokshown", token))
    shown = mod.ask_bot(room, f"!gate token show {token}")
    first = shown.splitlines()[0]
    assert first.startswith(f"Token {token} (invite, active): 1 of 3 used, 2 left"), shown
    assert re.search(r"expires in 7 days \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)$", first), shown
    assert "Made by @tokmod:test.local" in shown
    assert "- @tokshown:test.local (from 127.0.0.x)" in shown, shown
    assert f"Invite link: {synapse.gate_url}register?token={token}" in shown
    missing = mod.ask_bot(room, "!gate token show NoSuchToken123")
    assert missing == "Refused: token not found", missing


def test_an_expiry_edited_in_the_room_reaches_synapse(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    token = token_in(mod.ask_bot(room, "!gate token create 1 1d"))
    edited = mod.ask_bot(room, f"!gate token edit {token} expiry=30d")
    assert "expires in 30 days" in edited, edited
    (row,) = synapse.query("SELECT expiry_time FROM registration_tokens WHERE token = ?", (token,))
    shown = http.get(
        synapse.gate_url + f"admin/tokens/{token}", headers=synapse.auth_headers(mod.access_token)
    ).json()
    assert row[0] == shown["expiry_time"]
    assert 29 * DAY_MS < shown["expiry_time"] - int(shown["created_ts"]) <= 31 * DAY_MS


def test_a_word_token_is_made_in_the_room(
    synapse: SynapseServer, mod: MatrixUser, room: str
) -> None:
    reply = mod.ask_bot(room, "!gate token create 2 7d words=6")
    token = token_in(reply)
    assert len(token.split("-")) == 6 and all(w in wordlist() for w in token.split("-")), token
    assert "2 use(s)" in reply and f"register?token={token}" in reply, reply
    assert token_valid(synapse.base_url, token)
    default = token_in(mod.ask_bot(room, "!gate token create words"))
    assert len(default.split("-")) == 5, default
    short = mod.ask_bot(room, "!gate token create words=3")
    assert short.startswith("Refused: words must be an integer from 4 to 7"), short
    assert "words=N needs a number" in mod.ask_bot(room, "!gate token create words=many")
