"""Moderators' notifications and auto-join, against a real Synapse (SQLite and
PostgreSQL), aiosmtpd and matrix-nio: new requests and new accounts are mailed
and posted in the moderation room, a burst becomes a digest, a notification
survives an SMTP outage, room notifications wait while the room is open to
others, an invite-only room of `join_rooms` is joined after the bot invites the
account (mailed and invite tokens, client and web), and a failing auto-join is
reported in the room without failing the registration."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import Mail, SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    register,
    register_concurrently,
    registered,
    request_token,
)
from tests.integration.matrix import BOT, MatrixUser, wait_for_bot_line, wait_until

MODS = "mods@example.org"
FAST = {"per_second": 1000, "burst": 1000}
PASSWORD = "pebble harbour violet canyon"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def gate(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "moderators": ["@mod:test.local"],
        "moderation_room": "#moderation:test.local",
        "email_cooldown": 0,
        "mail_retry_initial": "1s",
        "mail_sweep_interval": "500ms",
        "rate_limits": {"per_ip": FAST, "per_email": FAST, "global": FAST},
    }
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return gate(
        notifications={
            "emails": [MODS],
            "room": True,
            "digest_after": 50,
            "digest_interval": "10s",
            "check_interval": "500ms",
        },
        after_registration={
            "join_rooms": ["#private:test.local", "#nosuchroom:test.local", "#closed:test.local"]
        },
    )


def moderation_room(synapse: SynapseServer) -> tuple[MatrixUser, str]:
    """@mod and the moderation room, with the bot in it."""
    mod = MatrixUser(synapse, "mod")
    room_id = mod.open_moderation_room()
    return mod, room_id


@pytest.fixture(scope="module")
def room(synapse: SynapseServer) -> tuple[MatrixUser, str]:
    return moderation_room(synapse)


@pytest.fixture(scope="module")
def private(synapse: SynapseServer) -> str:
    """#private: invite-only, the bot invited (not joined); #closed: invite-only,
    without the bot."""
    founder = MatrixUser(synapse, "founder")
    room_id = founder.create_room(alias="private", join_rule="invite", invite=(BOT,))
    founder.create_room(alias="closed", join_rule="invite")
    return room_id


def notices(mailbox: SmtpCatcher, pattern: str, timeout: float = 20.0) -> Mail:
    regex = re.compile(pattern)
    return mailbox.wait_for(lambda m: m.to == MODS and bool(regex.search(m.text)), timeout)


def membership(synapse: SynapseServer, room_id: str, user_id: str) -> str | None:
    rows = synapse.query(
        "SELECT membership FROM current_state_events"
        " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?",
        (room_id, user_id),
    )
    return str(rows[0][0]) if rows else None


def joined(synapse: SynapseServer, room_id: str, user_id: str) -> bool:
    return membership(synapse, room_id, user_id) == "join"


def invite_token(synapse: SynapseServer, admin_token: str) -> str:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    token: str = made.json()["token"]
    return token


def finish_on_the_web(synapse: SynapseServer, token: str, username: str | None = None) -> None:
    """The landing page's form; an invite token's asks for a username, a mailed one's not."""
    page = http.get(synapse.gate_url + f"register?token={token}")
    match = CSRF_FIELD.search(page.text)
    assert page.status == 200 and match, page
    form = {
        "csrf": match.group(1),
        "token": token,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    if username is not None:
        form["username"] = username
    made = http.post(synapse.gate_url + "register", form=form, cookies=page.cookies)
    assert made.status == 200 and "Your account is ready" in made.text, made.text


def test_a_new_request_and_its_account_are_mailed_and_posted(
    synapse: SynapseServer, mailbox: SmtpCatcher, room: tuple[MatrixUser, str], private: str
) -> None:
    mod, room_id = room
    token = request_token(synapse, mailbox, "notea", "notea@example.org")
    mail = notices(mailbox, r"New request for @notea:test\.local")
    assert "notea@example.org" in mail.text and "token mailed" in mail.text, mail.text
    assert token not in mail.text and token not in mail.subject and token not in (mail.html or "")
    assert mail.subject.startswith("[test.local] New request for @notea:test.local")
    line = wait_for_bot_line(mod, room_id, r"New request for @notea:test\.local")
    assert "n•••@example.org" in line and "notea@example.org" not in line and token not in line

    assert registered(register(synapse, "notea", token))
    account = notices(mailbox, r"New account @notea:test\.local")
    assert "made with a mailed token" in account.text and token not in account.text
    wait_for_bot_line(mod, room_id, r"New account @notea:test\.local: made with a mailed token")


def test_an_invite_only_room_is_joined_from_a_mailed_token_in_a_client_and_on_the_web(
    synapse: SynapseServer, mailbox: SmtpCatcher, room: tuple[MatrixUser, str], private: str
) -> None:
    token = request_token(synapse, mailbox, "joinermail", "joinermail@example.org")
    assert registered(register(synapse, "joinermail", token))
    user = synapse.user_id("joinermail")
    # The other rooms are still joined, even right after the burst above emptied
    # Synapse's join limit of the room (the join waits and tries again).
    wait_until(lambda: membership(synapse, private, user) == "join", "the private room joined", 60)
    assert membership(synapse, private, BOT) == "join"  # it accepted its invite to invite
    finish_on_the_web(synapse, request_token(synapse, mailbox, "joinerpage", "jp@example.org"))
    wait_until(partial(joined, synapse, private, synapse.user_id("joinerpage")), "joined (web)")


def test_an_invite_only_room_is_joined_from_an_invite_token_on_the_web_and_in_a_client(
    synapse: SynapseServer,
    admin_token: str,
    mailbox: SmtpCatcher,
    room: tuple[MatrixUser, str],
    private: str,
) -> None:
    mod, room_id = room
    finish_on_the_web(synapse, invite_token(synapse, admin_token), "joinerweb")
    assert registered(register(synapse, "joinerclient", invite_token(synapse, admin_token)))
    for localpart in ("joinerweb", "joinerclient"):
        user = synapse.user_id(localpart)
        wait_until(partial(joined, synapse, private, user), f"{user} joined")
        wait_for_bot_line(mod, room_id, rf"New account {re.escape(user)}: made with an invite")
    notices(mailbox, r"New account @joinerweb:test\.local: made with an invite token")


def test_a_burst_of_accounts_all_join_the_invite_only_room(
    synapse: SynapseServer, admin_token: str, private: str
) -> None:
    """More invites than Synapse's invite rate limits allow in a burst (10 per room
    and per issuer): the bot's invites are exempt."""
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 12},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    names = [f"crowd{i}" for i in range(12)]
    assert all(registered(r) for r in register_concurrently(synapse, names, made.json()["token"]))
    for name in names:
        wait_until(partial(joined, synapse, private, synapse.user_id(name)), f"{name} joined")
    assert "Too Many Requests" not in synapse.log_text()


def test_a_failing_auto_join_is_reported_and_the_account_still_made(
    synapse: SynapseServer, mailbox: SmtpCatcher, room: tuple[MatrixUser, str], private: str
) -> None:
    mod, room_id = room
    token = request_token(synapse, mailbox, "joinerfail", "joinerfail@example.org")
    assert registered(register(synapse, "joinerfail", token))
    unknown = wait_for_bot_line(
        mod, room_id, r"Auto-join failed for @joinerfail:test\.local: #nosuchroom:test\.local"
    )
    assert "the room is unknown" in unknown, unknown
    closed = wait_for_bot_line(
        mod, room_id, r"Auto-join failed for @joinerfail:test\.local: #closed:test\.local"
    )
    assert f"the bot {BOT} is not in the room" in closed, closed
    notices(mailbox, r"Auto-join failed for @joinerfail:test\.local: #nosuchroom")
    assert "could not join #closed:test.local" in synapse.log_text()
    user = synapse.user_id("joinerfail")
    # The other rooms are still joined, even right after the burst above emptied
    # Synapse's join limit of the room (the join waits and tries again).
    wait_until(lambda: membership(synapse, private, user) == "join", "the private room joined", 60)


def test_a_notification_mail_survives_an_smtp_outage(
    synapse: SynapseServer, mailbox: SmtpCatcher, room: tuple[MatrixUser, str]
) -> None:
    mailbox.refuse("451 4.3.0 Try again later")
    assert ask(synapse, "outage", "outage@example.org").status == 202

    def refused_once() -> bool:
        rows = synapse.query(
            "SELECT o.attempts, o.last_error FROM email_gate_outbox o"
            " JOIN email_gate_notification_messages m ON m.id = o.request_id"
            " WHERE o.kind = 'notification' AND o.recipient = ? AND o.status = 'queued'"
            " AND m.body LIKE ?",
            (MODS, "%@outage:test.local%"),
        )
        return any(attempts >= 1 and error for attempts, error in rows)

    wait_until(refused_once, "the notification mail to be refused at least once")
    assert not [m for m in mailbox.messages if m.to == MODS and "@outage:" in m.text]
    mailbox.accept()
    mail = notices(mailbox, r"New request for @outage:test\.local")
    assert "outage@example.org" in mail.text


def test_a_burst_becomes_a_digest_without_clear_addresses(
    make_synapse: Any, synapse_db: str, smtp: SmtpCatcher
) -> None:
    # Its own address: the module's server may still be mailing MODS about earlier tests.
    digest_mods = "digest-mods@example.org"
    smtp.clear()
    smtp.accept()
    server: SynapseServer = make_synapse(
        gate(
            notifications={
                "emails": [digest_mods],
                "room": True,
                "events": ["requests"],
                "digest_after": 2,
                "digest_interval": "10s",
                "check_interval": "500ms",
            },
            privacy={"hash_emails": True, "hash_secret": "a secret of sixteen+ chars"},
        ),
        db=synapse_db,
    )
    mod, room_id = moderation_room(server)
    names = [f"burst{i}" for i in range(8)]
    for name in names:
        assert ask(server, name, f"{name}@example.org").status == 202

    def all_mailed() -> list[Mail] | None:
        mails = [m for m in smtp.messages if m.to == digest_mods]
        told = {name for name in names for m in mails if f"@{name}:test.local" in m.text}
        return mails if told == set(names) else None

    mails = wait_until(all_mailed, "every request in a mail", timeout=30)
    assert mails is not None
    for name in names:  # each event once
        assert len([m for m in mails if f"@{name}:test.local" in m.text]) == 1, name
    digests = [m for m in mails if "Digest of" in m.subject + m.text]
    assert len(mails) < len(names) and len(digests) >= 1, [m.subject for m in mails]
    assert re.search(r"Digest of \d+ events \(\d+ new requests\)", digests[0].text)
    assert all("@example.org" not in m.text.replace(digest_mods, "") for m in mails)

    def all_posted() -> list[str] | None:
        lines = [ln for ln in mod.bot_lines(room_id) if "burst" in ln]
        told = {name for name in names for ln in lines if f"@{name}:test.local" in ln}
        return lines if told == set(names) else None

    lines = wait_until(all_posted, "every request in the room", timeout=30)
    assert lines is not None
    for name in names:
        assert len([ln for ln in lines if f"@{name}:test.local" in ln]) == 1, name
    assert len(lines) < len(names) and any(ln.startswith("Digest of") for ln in lines), lines
    assert all("@example.org" not in ln for ln in lines)


def test_room_notifications_wait_while_the_room_is_open_to_others(
    make_synapse: Any, synapse_db: str
) -> None:
    server: SynapseServer = make_synapse(
        gate(notifications={"room": True, "check_interval": "500ms"}), db=synapse_db
    )
    mod, room_id = moderation_room(server)
    outsider = MatrixUser(server, "outsider")
    mod.invite(room_id, outsider.user_id)
    outsider.join(room_id)
    assert ask(server, "heldback", "heldback@example.org").status == 202
    wait_until(
        lambda: (
            "notifications held back: " in server.log_text()
            and "@outsider:test.local" in server.log_text()
        ),
        "the notification to be held back",
    )
    assert not any("heldback" in line for line in outsider.bot_lines(room_id))
    mod.kick(room_id, outsider.user_id)
    wait_for_bot_line(mod, room_id, r"New request for @heldback:test\.local")
