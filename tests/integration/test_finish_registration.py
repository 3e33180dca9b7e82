"""Finishing registration on the token landing page, against a real Synapse:
the form drives Synapse's own client registration, so the token is consumed as
a client's would be; password policy, consent, CSRF; after-registration actions."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    Registration,
    login,
    register,
    registered,
    request_token,
    token_valid,
)

PASSWORD = "kiwi lamp orbit fjord"
WELCOME_SENDER = "welcome"
LOBBY = "lobby"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "branding": {"terms_url": "https://example.org/terms"},
        "password": {"min_length": 10, "min_score": 3},
        "after_registration": {
            "join_rooms": [f"#{LOBBY}:test.local"],
            "welcome": {
                "sender": f"@{WELCOME_SENDER}:test.local",
                "message": {"en": "Welcome aboard!", "de": "Willkommen an Bord!"},
            },
        },
    }


@pytest.fixture(scope="module")
def lobby(synapse: SynapseServer) -> str:
    """A public room #lobby:test.local, and the welcome sender's account."""
    token = synapse.register_user("founder", secrets.token_urlsafe(12))
    made = http.post(
        synapse.url("/_matrix/client/v3/createRoom"),
        json={"preset": "public_chat", "room_alias_name": LOBBY},
        headers=synapse.auth_headers(token),
    )
    assert made.status == 200, made
    synapse.register_user(WELCOME_SENDER, secrets.token_urlsafe(12))
    room_id: str = made.json()["room_id"]
    return room_id


def landing(synapse: SynapseServer, token: str) -> tuple[str, dict[str, str], str]:
    page = http.get(synapse.gate_url + f"register?token={token}")
    assert page.status == 200, page
    match = CSRF_FIELD.search(page.text)
    assert match, page.text
    return match.group(1), page.cookies, page.text


def finish(
    synapse: SynapseServer,
    token: str,
    password: str = PASSWORD,
    confirm: str | None = None,
    consent: bool = True,
    session: tuple[str, dict[str, str]] | None = None,
    client: str | None = None,
) -> http.Response:
    """The form post; from ``client`` (X-Forwarded-For of a trusted proxy) if given."""
    if session is None:
        csrf, cookies, _ = landing(synapse, token)
    else:
        csrf, cookies = session
    form = {
        "csrf": csrf,
        "token": token,
        "password": password,
        "password_confirm": password if confirm is None else confirm,
    }
    if consent:
        form["consent"] = "yes"
    headers = {"X-Forwarded-For": client} if client else None
    return http.post(synapse.gate_url + "register", form=form, cookies=cookies, headers=headers)


def token_uses(synapse: SynapseServer, token: str) -> tuple[int, int]:
    (row,) = synapse.query(
        "SELECT pending, completed FROM registration_tokens WHERE token = ?", (token,)
    )
    return int(row[0]), int(row[1])


def test_the_landing_page_offers_the_form_and_client_links(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "lena", "lena@example.org")
    _, cookies, text = landing(synapse, token)
    assert "email_gate_csrf" in cookies
    assert "@lena:test.local" in text and token in text
    assert 'name="password"' in text and 'name="password_confirm"' in text
    assert 'name="consent"' in text  # terms_url is set: consent is required
    # Element's registration URL with the homeserver filled in
    assert "https://app.element.io/#/register?hs_url=http%3A%2F%2F127.0.0.1%3A" in text
    assert 'class="copy' in text


def test_the_form_creates_the_account_and_consumes_the_token(
    synapse: SynapseServer, mailbox: SmtpCatcher, lobby: str
) -> None:
    token = request_token(synapse, mailbox, "mila", "mila@example.org")
    assert token_uses(synapse, token) == (0, 0)
    csrf, cookies, _ = landing(synapse, token)
    done = finish(synapse, token, session=(csrf, cookies))
    assert done.status == 200, done.text
    assert "Your account is ready" in done.text
    assert "@mila:test.local" in done.text
    assert "127.0.0.1" in done.text  # where to log in: the homeserver URL
    assert token_uses(synapse, token) == (0, 1)

    logged_in = login(synapse, "mila", PASSWORD)
    assert logged_in.status == 200, logged_in
    assert logged_in.json()["user_id"] == "@mila:test.local"

    # the token is spent: the page says so, and neither the form nor a client can reuse it
    again = finish(synapse, token, session=(csrf, cookies))
    assert "already been used" in again.text
    assert not registered(register(synapse, "mila2", token))
    status = synapse.query("SELECT status FROM email_gate_requests WHERE localpart = 'mila'")
    assert status == [("registered",)]

    # after registration: the lobby is joined, the welcome sender invited us and wrote
    def welcomed() -> bool:
        invites = memberships(synapse, "@mila:test.local", "invite")
        return lobby in memberships(synapse, "@mila:test.local", "join") and any(
            messages_from(synapse, room, f"@{WELCOME_SENDER}:test.local") for room in invites
        )

    wait_until(welcomed)
    (dm,) = memberships(synapse, "@mila:test.local", "invite")
    assert messages_from(synapse, dm, f"@{WELCOME_SENDER}:test.local") == 1


def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def messages_from(synapse: SynapseServer, room_id: str, sender: str) -> int:
    rows = synapse.query(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.message' AND sender = ?",
        (room_id, sender),
    )
    return int(rows[0][0])


def memberships(synapse: SynapseServer, user_id: str, membership: str) -> list[str]:
    rows = synapse.query(
        "SELECT room_id FROM local_current_membership WHERE user_id = ? AND membership = ?",
        (user_id, membership),
    )
    return [str(row[0]) for row in rows]


def test_password_policy_and_confirmation_leave_the_token_unused(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "nora", "nora@example.org")
    csrf, cookies, _ = landing(synapse, token)
    session = (csrf, cookies)

    short = finish(synapse, token, "short", session=session)
    assert short.status == 400
    assert "too short" in short.text and 'aria-invalid="true"' in short.text
    weak = finish(synapse, token, "password1234", session=session)
    assert weak.status == 400 and "too easy to guess" in weak.text
    similar = finish(synapse, token, "nora.test.local", session=session)
    assert similar.status == 400 and "too easy to guess" in similar.text
    mismatch = finish(synapse, token, PASSWORD, confirm=PASSWORD + "x", session=session)
    assert mismatch.status == 400 and "not the same" in mismatch.text
    no_consent = finish(synapse, token, consent=False, session=session)
    assert no_consent.status == 400 and "tick the box" in no_consent.text
    assert token_uses(synapse, token) == (0, 0)
    assert login(synapse, "nora", PASSWORD).status == 403

    assert finish(synapse, token, session=session).status == 200
    assert login(synapse, "nora", PASSWORD).status == 200


def test_the_form_needs_the_cookie_of_the_page(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "olga", "olga@example.org")
    csrf, _, _ = landing(synapse, token)
    forged = finish(synapse, token, session=(csrf, {}))
    assert forged.status == 400
    assert "session expired" in forged.text
    assert token_uses(synapse, token) == (0, 0)


def test_an_unknown_token_gets_no_form(synapse: SynapseServer) -> None:
    answer = finish(synapse, "NOSUCHTOKEN", session=("x" * 32, {"email_gate_csrf": "x" * 32}))
    assert answer.status == 404
    assert 'name="password"' not in answer.text


def test_a_client_registration_runs_the_after_registration_actions_too(
    synapse: SynapseServer, mailbox: SmtpCatcher, lobby: str
) -> None:
    token = request_token(synapse, mailbox, "pia", "pia@example.org")
    assert registered(register(synapse, "whatever", token))
    wait_until(lambda: lobby in memberships(synapse, "@pia:test.local", "join"))


def test_the_web_finish_keeps_the_persons_address_and_limits_each_person(
    make_synapse: Any, mailbox: SmtpCatcher, synapse_db: str
) -> None:
    """Synapse sees every web registration come from the server itself; the module
    limits, bans and records the person's own address (behind a trusted proxy)."""
    own: SynapseServer = make_synapse(
        {
            "trusted_proxies": ["127.0.0.1"],
            "banned_ips": ["203.0.113.99"],
            "rate_limits": {
                "per_ip": {"burst": 100, "per_second": 10},
                "web_registration": {"burst": 1, "per_second": 0.0001},
            },
        },
        db=synapse_db,
    )
    ops = own.register_admin("ops", "ops-password-1")
    tokens = {
        name: request_token(own, mailbox, name, f"{name}@example.org")
        for name in ("webip1", "webip2", "webip3", "webip4")
    }

    def accounts(token: str) -> list[dict[str, Any]]:
        shown = http.get(own.gate_url + f"admin/tokens/{token}", headers=own.auth_headers(ops))
        made: list[dict[str, Any]] = shown.json()["accounts"]
        return made

    done = finish(own, tokens["webip1"], client="198.51.100.23")
    assert done.status == 200, done.text
    assert [(a["user_id"], a["ip"], a["via"]) for a in accounts(tokens["webip1"])] == [
        ("@webip1:test.local", "198.51.100.23", "web")
    ]
    # The same person again: the module's own limit, keyed by their address.
    limited = finish(own, tokens["webip2"], client="198.51.100.23")
    assert limited.status == 429, limited.text
    assert limited.header("Retry-After") is not None
    assert token_valid(own.base_url, tokens["webip2"])
    # Someone else is not held up by them (Synapse's limit would have counted both).
    assert finish(own, tokens["webip3"], client="198.51.100.24").status == 200
    # A banned address is refused before Synapse is asked; the token stays usable.
    banned = finish(own, tokens["webip4"], client="203.0.113.99")
    assert banned.status == 403, banned.text
    assert token_valid(own.base_url, tokens["webip4"])
    assert accounts(tokens["webip4"]) == []

    # A client cannot claim an address with a made-up seal: Synapse's view is recorded.
    invite = http.post(
        own.gate_url + "admin/tokens", json={"uses_allowed": 1}, headers=own.auth_headers(ops)
    ).json()["token"]
    forged = Registration(
        own.base_url, "webip5", email_gate_client_address="192.0.2.1|99999999999999|00ff"
    )
    forged.token_stage(invite)
    assert forged.finish().status == 200
    assert [(a["ip"], a["via"]) for a in accounts(invite)] == [("127.0.0.1", "client")]
