"""Commands in a Matrix room, against a real Synapse: the bot joins when invited,
posts pending requests, and answers moderators exactly once."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import register, registered, token_from

SYNAPSE_DATABASES = ["sqlite"]
BOT = "@email-gate:test.local"
REASON = "I run the local chess club and we want to move our chat here."
_txn = itertools.count()


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@mod:test.local"],
        "moderation_room": "#moderation:test.local",
        "approval": "required",
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def client(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> Any:
    answer = http.request(
        method, synapse.url("/_matrix/client/v3" + path), headers=synapse.auth_headers(token), **kw
    )
    assert answer.status == 200, answer
    return answer.json()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: str) -> str:
    bot_exists = lambda: http.get(synapse.url(f"/_matrix/client/v3/profile/{BOT}")).status == 200  # noqa: E731
    wait_until(bot_exists, "the bot user")
    created = client(
        synapse,
        mod,
        "POST",
        "/createRoom",
        json={"room_alias_name": "moderation", "preset": "private_chat", "invite": [BOT]},
    )
    room_id: str = created["room_id"]
    wait_until(lambda: BOT in members(synapse, mod, room_id), "the bot to join")
    return room_id


def members(synapse: SynapseServer, token: str, room_id: str) -> dict[str, Any]:
    joined: dict[str, Any] = client(
        synapse, token, "GET", f"/rooms/{quote(room_id)}/joined_members"
    )["joined"]
    return joined


def say(synapse: SynapseServer, token: str, room_id: str, body: str) -> str:
    path = f"/rooms/{quote(room_id)}/send/m.room.message/t{next(_txn)}"
    event_id: str = client(synapse, token, "PUT", path, json={"msgtype": "m.text", "body": body})[
        "event_id"
    ]
    return event_id


def bot_lines(synapse: SynapseServer, token: str, room_id: str) -> list[str]:
    events = client(synapse, token, "GET", f"/rooms/{quote(room_id)}/messages?dir=b&limit=100")
    return [
        e["content"].get("body", "")
        for e in reversed(events["chunk"])
        if e["sender"] == BOT and e["type"] == "m.room.message"
    ]


def ask_bot(synapse: SynapseServer, token: str, room_id: str, body: str) -> str:
    before = len(bot_lines(synapse, token, room_id))
    say(synapse, token, room_id, body)
    lines = wait_until(
        lambda: bot_lines(synapse, token, room_id)[before:], f"the bot's answer to {body!r}"
    )
    time.sleep(0.5)  # a second answer would have arrived by now
    assert len(bot_lines(synapse, token, room_id)) == before + 1, "answered more than once"
    reply: str = lines[0]
    return reply


def test_help_lists_the_commands(synapse: SynapseServer, mod: str, room: str) -> None:
    reply = ask_bot(synapse, mod, room, "!gate help")
    assert "!gate approve ID" in reply and "!gate token create" in reply


def test_a_token_created_in_the_room_registers_an_account(
    synapse: SynapseServer, mod: str, room: str
) -> None:
    reply = ask_bot(synapse, mod, room, "!gate token create 1 7d")
    match = re.search(r"Token (\S+):", reply)
    assert match, reply
    assert registered(register(synapse, "roominvited", match.group(1)))
    listed = ask_bot(synapse, mod, room, "!gate token list")
    assert match.group(1) not in listed
    # Who made it and what it made; and the other way, from the account.
    shown = ask_bot(synapse, mod, room, f"!gate token show {match.group(1)}")
    assert "(invite, used): 1 of 1 used, 0 left" in shown, shown
    assert "Made by @mod:test.local" in shown, shown
    assert "- @roominvited:test.local (from 127.0.0.1)" in shown, shown
    account = ask_bot(synapse, mod, room, "!gate account @roominvited:test.local")
    assert f"invite token {match.group(1)}, made by @mod:test.local" in account, account


def test_non_moderators_are_refused(synapse: SynapseServer, mod: str, room: str) -> None:
    outsider = synapse.register_user("outsider", "outsider-password-1")
    client(
        synapse,
        mod,
        "POST",
        f"/rooms/{quote(room)}/invite",
        json={"user_id": "@outsider:test.local"},
    )
    client(synapse, outsider, "POST", f"/rooms/{quote(room)}/join", json={})
    reply = ask_bot(synapse, outsider, room, "!gate token create")
    assert "only moderators" in reply


def test_pending_requests_are_posted_and_approved_from_the_room(
    synapse: SynapseServer, mod: str, room: str, mailbox: SmtpCatcher
) -> None:
    email = "roomapplicant@example.org"
    answer = http.post(
        synapse.gate_url + "api/request",
        json={"username": "roomapplicant", "email": email, "reason": REASON},
    )
    assert answer.status == 202
    link = re.search(
        r"(http://\S+/verify\?code=\S+)", mailbox.wait_for(lambda m: m.to == email).text
    )
    assert link
    page = http.get(link.group(1))
    code = re.search(r'name="code" value="([^"]+)"', page.text)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert code and csrf
    http.post(
        synapse.gate_url + "verify",
        form={"code": code.group(1), "csrf": csrf.group(1)},
        cookies=page.cookies,
    )
    announced = wait_until(
        lambda: [line for line in bot_lines(synapse, mod, room) if "roomapplicant" in line],
        "the announcement",
    )
    assert REASON in announced[0]
    request_id = re.search(r"New request (\S+):", announced[0])
    assert request_id
    reply = ask_bot(synapse, mod, room, f"!gate approve {request_id.group(1)}")
    assert "issued" in reply
    token = token_from(mailbox.wait_for(lambda m: m.to == email and "Registration token" in m.text))
    assert registered(register(synapse, "x", token))


def test_bans_from_the_room_apply(synapse: SynapseServer, mod: str, room: str) -> None:
    reply = ask_bot(synapse, mod, room, "!gate ban username ^roomspam bot wave")
    assert "Banned username" in reply
    refused = http.post(
        synapse.gate_url + "api/request",
        json={"username": "roomspam1", "email": "rs@example.org", "reason": REASON},
    )
    assert refused.status == 400 and refused.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
