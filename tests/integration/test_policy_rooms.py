"""Matrix policy lists against a real Synapse: a user publishes ban rules as state
events in a public room (through matrix-nio, as Draupnir would), and the module,
following the room by its alias, applies them within seconds with no reload."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    Registration,
    ask,
    request_outcome,
    request_token,
    scrape,
    token_valid,
    user_exists,
    value,
)
from tests.integration.matrix import BOT, MatrixUser, wait_until
from tests.integration.test_cli import cli
from tests.integration.test_cli import ok as cli_ok

USERNAME_BANNED = "EMAIL_GATE_USERNAME_BANNED"
RULE = "m.policy.rule.user"
_rule_keys = itertools.count()


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "policy_rooms": [
            "#community-bans:test.local",
            "!nosuchroom:test.local",
            "#private-bans:test.local",
        ],
        "moderators": ["@mod:test.local"],
        "moderation_room": "#moderation:test.local",
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "email_cooldown": 1,
    }


@pytest.fixture(scope="module")
def publisher(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "publisher")


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "mod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, publisher: MatrixUser) -> str:
    """The public policy room; the bot joins it by itself."""
    room_id = publisher.create_room(alias="community-bans", join_rule="public")
    wait_until(lambda: BOT in publisher.joined(room_id), "the bot to join the policy room", 45)
    return room_id


def publish(
    user: MatrixUser, room_id: str, entity: str, kind: str = RULE, **extra: Any
) -> tuple[str, str]:
    """A ban rule; returns its state key and event ID."""
    key = f"rule:{next(_rule_keys)}"
    content = {"entity": entity, "recommendation": "m.ban", "reason": "spam wave", **extra}
    return key, user.put_state(room_id, kind, content, state_key=key)


def verdict(synapse: SynapseServer, name: str) -> str | None:
    answer = ask(synapse, name, f"{name}@example.org")
    if answer.status == 202:
        return None
    assert answer.status == 400, answer
    errcode: str = answer.json()["errcode"]
    return errcode


def banned(synapse: SynapseServer, name: str) -> bool:
    return verdict(synapse, name) == USERNAME_BANNED


def test_a_rule_bans_the_name_at_request_time_within_seconds(
    synapse: SynapseServer, publisher: MatrixUser, room: str
) -> None:
    assert not banned(synapse, "spamalot0")
    publish(publisher, room, "@spamalot1:test.local")
    wait_until(lambda: banned(synapse, "spamalot1"), "the rule to apply", 10)
    assert not banned(synapse, "spamalot2")


def test_a_glob_bans_every_name_it_matches_and_nothing_else(
    synapse: SynapseServer, publisher: MatrixUser, room: str
) -> None:
    publish(publisher, room, "@globspam*:test.local")
    publish(publisher, room, "@q?uiz:test.local")
    # Two state events: a read between them sees only the first, so wait for both.
    wait_until(
        lambda: banned(synapse, "globspam") and banned(synapse, "qxuiz"), "the globs to apply", 10
    )
    assert banned(synapse, "globspammer42")
    assert not banned(synapse, "xglobspam")  # anchored
    assert not banned(synapse, "qxxuiz")  # ? is one character
    assert not banned(synapse, "qquiz.")  # anchored at the end too


def test_rules_for_other_servers_and_other_recommendations_are_ignored(
    synapse: SynapseServer, publisher: MatrixUser, room: str
) -> None:
    publish(publisher, room, "@elsewhere:other.example")
    publish(publisher, room, "@notaban:test.local", recommendation="m.mute")
    publish(publisher, room, "@marker:test.local")  # applied after the others
    wait_until(lambda: banned(synapse, "marker"), "the marker rule", 10)
    assert not banned(synapse, "elsewhere")
    assert not banned(synapse, "notaban")


def test_legacy_rule_types_and_recommendation_apply(
    synapse: SynapseServer, publisher: MatrixUser, room: str
) -> None:
    publish(publisher, room, "@legacyroom:test.local", kind="m.room.rule.user")
    publish(
        publisher,
        room,
        "@legacymjolnir:test.local",
        kind="org.matrix.mjolnir.rule.user",
        recommendation="org.matrix.mjolnir.ban",
    )
    wait_until(lambda: banned(synapse, "legacyroom"), "m.room.rule.user", 10)
    wait_until(lambda: banned(synapse, "legacymjolnir"), "org.matrix.mjolnir.rule.user", 10)


def test_emptying_or_redacting_a_rule_lifts_the_ban_within_seconds(
    synapse: SynapseServer, publisher: MatrixUser, room: str
) -> None:
    emptied, _ = publish(publisher, room, "@liftme:test.local")
    _, redacted = publish(publisher, room, "@redactme:test.local")
    wait_until(lambda: banned(synapse, "liftme") and banned(synapse, "redactme"), "the bans", 10)
    publisher.put_state(room, RULE, {}, state_key=emptied)
    wait_until(lambda: not banned(synapse, "liftme"), "the emptied rule to stop applying", 10)
    publisher.redact(room, redacted)
    wait_until(lambda: not banned(synapse, "redactme"), "the redacted rule to stop applying", 10)


def test_a_token_mailed_before_the_rule_is_revoked_and_refused_at_registration(
    synapse: SynapseServer, mailbox: SmtpCatcher, publisher: MatrixUser, room: str
) -> None:
    unused = request_token(synapse, mailbox, "wavemember", "wavemember@example.org")
    staged = request_token(synapse, mailbox, "wavestaged", "wavestaged@example.org")
    session = Registration(synapse.base_url, "wavestaged")
    session.token_stage(staged)
    assert token_valid(synapse.base_url, unused)

    publish(publisher, room, "@wave*:test.local")
    wait_until(lambda: not token_valid(synapse.base_url, unused), "the token to be revoked", 10)
    assert request_outcome(synapse, "wavemember") == ("revoked", "username_banned")
    answer = session.finish()
    assert answer.status == 403, answer
    assert answer.json()["errcode"] == USERNAME_BANNED
    assert not user_exists(synapse, "wavestaged")


def test_admins_see_which_rule_of_which_room_bans_a_name(
    synapse: SynapseServer, publisher: MatrixUser, room: str, mod: MatrixUser
) -> None:
    key, _ = publish(publisher, room, "@whyme*:test.local", reason="known spammer")
    wait_until(lambda: banned(synapse, "whyme1"), "the rule", 10)
    answer = http.get(
        synapse.gate_url + "admin/policy/why?username=whyme1",
        headers=synapse.auth_headers(mod.access_token),
    )
    assert answer.status == 200, answer
    body = answer.json()
    assert body["banned"] is True
    (rule,) = [m for m in body["matches"] if m["source"] == "policy_room"]
    assert rule["room"] == "#community-bans:test.local" and rule["room_id"] == room
    assert rule["entity"] == "@whyme*:test.local" and rule["state_key"] == key
    assert rule["type"] == RULE and rule["reason"] == "known spammer"
    assert rule["sender"] == publisher.user_id

    policy = http.get(
        synapse.gate_url + "admin/policy", headers=synapse.auth_headers(mod.access_token)
    ).json()
    rooms = {r["room"]: r for r in policy["policy_rooms"]}
    assert rooms["#community-bans:test.local"]["joined"] is True
    assert rooms["#community-bans:test.local"]["room_id"] == room
    missing = rooms["!nosuchroom:test.local"]
    assert missing["joined"] is False and missing["problem"], missing


def test_a_room_that_cannot_be_joined_is_logged_and_counted_and_start_up_went_on(
    synapse: SynapseServer, room: str
) -> None:
    # The server answers (the fixture started it), and the other room is followed.
    wait_until(
        lambda: "policy room !nosuchroom:test.local: cannot join" in synapse.log_text(),
        "the warning",
        10,
    )
    samples = scrape(synapse)
    missing, followed = "!nosuchroom:test.local", "#community-bans:test.local"
    assert value(samples, "synapse_email_gate_policy_room_failures_total", room=missing) >= 1
    assert value(samples, "synapse_email_gate_policy_room_joined", room=missing) == 0
    assert value(samples, "synapse_email_gate_policy_room_joined", room=followed) == 1
    assert value(samples, "synapse_email_gate_policy_room_rules", room=followed) >= 1


def test_the_room_bot_says_why_a_name_is_banned(
    synapse: SynapseServer, publisher: MatrixUser, room: str, mod: MatrixUser
) -> None:
    publish(publisher, room, "@roomwhy*:test.local", reason="raid")
    wait_until(lambda: banned(synapse, "roomwhy2"), "the rule", 10)
    mod_room = mod.create_room(alias="moderation", invite=(BOT,))
    wait_until(lambda: BOT in mod.joined(mod_room), "the bot to join the moderation room")
    reply = mod.ask_bot(mod_room, "!gate why roomwhy2")
    assert "@roomwhy2:test.local is banned by:" in reply, reply
    assert "rule @roomwhy*:test.local in policy room #community-bans:test.local" in reply, reply
    assert "(raid)" in reply, reply
    assert "is not banned" in mod.ask_bot(mod_room, "!gate why innocent")


def test_the_cli_says_why_a_name_is_banned(
    synapse: SynapseServer, publisher: MatrixUser, room: str, mod: MatrixUser
) -> None:
    publish(publisher, room, "@cliwhy?:test.local", reason="bot farm")
    wait_until(lambda: banned(synapse, "cliwhy1"), "the rule", 10)
    text = cli_ok(cli(synapse, mod.access_token, "bans", "why", "cliwhy1"))
    assert "@cliwhy1:test.local is banned by:" in text, text
    assert "rule @cliwhy?:test.local in policy room #community-bans:test.local" in text, text
    assert f"({room}, m.policy.rule.user" in text and "(bot farm)" in text, text
    listed = cli_ok(cli(synapse, mod.access_token, "bans", "list", "--all"))
    assert "@cliwhy?:test.local" in listed and "#community-bans:test.local" in listed, listed


def test_a_private_room_made_after_start_up_is_followed_once_the_bot_is_invited(
    synapse: SynapseServer, publisher: MatrixUser
) -> None:
    wait_until(
        lambda: "policy room #private-bans:test.local: alias not found" in synapse.log_text(),
        "the alias to be missing at first",
        10,
    )
    private = publisher.create_room(alias="private-bans", invite=(BOT,))
    # Joined on the invite, not at the next retry 30 s later.
    wait_until(lambda: BOT in publisher.joined(private), "the bot to accept the invite", 10)
    publish(publisher, private, "@privatelist:test.local")
    wait_until(lambda: banned(synapse, "privatelist"), "the private room's rule", 10)
