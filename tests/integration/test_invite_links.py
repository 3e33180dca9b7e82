"""Invite links against a real Synapse: every invite token has a shareable link
whose page lets the person choose a username and a password and makes the
account on the web (Synapse's own /register, driven by the page); the username
is checked as on the request page, the token's uses are honoured, and a link
that can make no more accounts looks like an unknown one."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from nio import AsyncClient, LoginResponse

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, register, registered, token_valid

PASSWORD = "pebble harbour violet canyon"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "banned_usernames": ["^spam", "admin"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "password": {"min_length": 10},
    }


def admin(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(token), **kw
    )


def invite(synapse: SynapseServer, admin_token: str, uses: int = 1) -> dict[str, Any]:
    made = admin(synapse, admin_token, "POST", "tokens", json={"uses_allowed": uses})
    assert made.status == 201, made
    token: dict[str, Any] = made.json()
    return token


def open_link(link: str) -> tuple[str, dict[str, str], http.Response]:
    page = http.get(link)
    match = CSRF_FIELD.search(page.text)
    return (match.group(1) if match else ""), page.cookies, page


def post_form(
    synapse: SynapseServer,
    token: str,
    username: str,
    session: tuple[str, dict[str, str]],
    password: str = PASSWORD,
    confirm: str | None = None,
    client: str | None = None,
) -> http.Response:
    """The form post; from ``client`` (X-Forwarded-For of a trusted proxy) if given."""
    csrf, cookies = session
    form = {
        "csrf": csrf,
        "token": token,
        "username": username,
        "password": password,
        "password_confirm": password if confirm is None else confirm,
    }
    headers = {"X-Forwarded-For": client} if client else None
    return http.post(synapse.gate_url + "register", form=form, cookies=cookies, headers=headers)


def nio_login(synapse: SynapseServer, localpart: str, password: str) -> str:
    """Log in as a Matrix client does (matrix-nio); the user ID it got."""

    async def run() -> str:
        client = AsyncClient(synapse.base_url, synapse.user_id(localpart))
        try:
            answer = await client.login(password)
            assert isinstance(answer, LoginResponse), answer
            return str(answer.user_id)
        finally:
            await client.close()

    return asyncio.run(run())


def accounts_of(synapse: SynapseServer, token: str) -> list[str]:
    rows = synapse.query(
        "SELECT user_id FROM email_gate_token_uses WHERE token = ? AND state = 'used'"
        " ORDER BY user_id",
        (token,),
    )
    return [str(row[0]) for row in rows]


def test_every_invite_token_has_a_link_that_makes_accounts_up_to_its_uses(
    synapse: SynapseServer, admin_token: str
) -> None:
    made = invite(synapse, admin_token, uses=2)
    token = made["token"]
    assert made["link"] == synapse.gate_url + f"register?token={token}", made
    listed = admin(synapse, admin_token, "GET", "tokens").json()["tokens"]
    assert [t["link"] for t in listed if t["token"] == token] == [made["link"]]

    csrf, cookies, page = open_link(made["link"])
    assert page.status == 200, page
    assert "You have been invited" in page.text
    assert 'name="username"' in page.text and 'name="password_confirm"' in page.text
    assert "email_gate_csrf" in cookies

    done = post_form(synapse, token, "Invitee-One", (csrf, cookies))
    assert done.status == 200, done.text
    assert "Your account is ready" in done.text and "@invitee-one:test.local" in done.text
    assert nio_login(synapse, "invitee-one", PASSWORD) == "@invitee-one:test.local"
    # The account is linked to the token, and the person's address came with the form.
    (row,) = synapse.query(
        "SELECT via FROM email_gate_token_uses WHERE user_id = '@invitee-one:test.local'"
    )
    assert row[0] == "web"

    csrf, cookies, page = open_link(made["link"])
    assert page.status == 200 and 'name="username"' in page.text
    assert post_form(synapse, token, "invitee-two", (csrf, cookies)).status == 200
    assert nio_login(synapse, "invitee-two", PASSWORD) == "@invitee-two:test.local"
    assert accounts_of(synapse, token) == ["@invitee-one:test.local", "@invitee-two:test.local"]

    # Both uses are made: the link now looks exactly like an unknown one, and the
    # form makes no third account.
    used = http.get(made["link"])
    unknown = http.get(synapse.gate_url + "register?token=NoSuchInviteToken1")
    assert used.status == unknown.status == 404
    assert "This link does not work" in used.text and 'name="password"' not in used.text
    assert used.text.replace(token, "") == unknown.text.replace("NoSuchInviteToken1", "")
    third = post_form(synapse, token, "invitee-three", (csrf, cookies))
    assert third.status == 404 and 'name="password"' not in third.text
    assert not token_valid(synapse.base_url, token)
    assert accounts_of(synapse, token) == ["@invitee-one:test.local", "@invitee-two:test.local"]


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("", "Please choose a username."),
        ("bad name!", "This username cannot be used."),
        ("spammer", "This username is not allowed on this server."),
        ("adm1n", "This username is not allowed on this server."),  # a look-alike of a ban
        ("takenname", "This username is already taken."),
        ("heldname", "This username is already taken."),  # reserved by a mailed request
    ],
)
def test_a_refused_username_is_named_next_to_the_field_and_the_token_stays_unused(
    synapse: SynapseServer,
    admin_token: str,
    mailbox: SmtpCatcher,
    username: str,
    message: str,
) -> None:
    if username == "takenname" and not registered_user(synapse, username):
        synapse.register_user(username, "taken-password-1")
    if username == "heldname":
        assert ask(synapse, "heldname", "held@example.org").status == 202
    token = invite(synapse, admin_token)["token"]
    csrf, cookies, _ = open_link(synapse.gate_url + f"register?token={token}")
    answer = post_form(synapse, token, username, (csrf, cookies))
    assert answer.status == 400, answer.text
    error = re.search(r'<p class="error" id="username-error" role="alert">([^<]*)</p>', answer.text)
    assert error, answer.text
    assert error.group(1).startswith(message), error.group(1)
    assert 'aria-invalid="true"' in answer.text
    assert f'value="{username}"' in answer.text or not username  # the typed name is kept
    assert accounts_of(synapse, token) == []
    assert token_valid(synapse.base_url, token)


def registered_user(synapse: SynapseServer, localpart: str) -> bool:
    rows = synapse.query("SELECT 1 FROM users WHERE name = ?", (synapse.user_id(localpart),))
    return bool(rows)


def test_the_form_needs_the_pages_cookie_and_matching_passwords(
    synapse: SynapseServer, admin_token: str
) -> None:
    token = invite(synapse, admin_token)["token"]
    csrf, cookies, _ = open_link(synapse.gate_url + f"register?token={token}")
    forged = post_form(synapse, token, "forgedform", (csrf, {}))
    assert forged.status == 400 and "session expired" in forged.text
    mismatch = post_form(synapse, token, "mismatched", (csrf, cookies), confirm=PASSWORD + "x")
    assert mismatch.status == 400 and "not the same" in mismatch.text
    short = post_form(synapse, token, "shortpass", (csrf, cookies), password="short")
    assert short.status == 400 and "too short" in short.text
    assert accounts_of(synapse, token) == []
    assert post_form(synapse, token, "cookieok", (csrf, cookies)).status == 200
    assert accounts_of(synapse, token) == ["@cookieok:test.local"]


def test_a_disabled_or_deleted_invite_link_looks_unknown(
    synapse: SynapseServer, admin_token: str
) -> None:
    token = invite(synapse, admin_token)["token"]
    link = synapse.gate_url + f"register?token={token}"
    csrf, cookies, _ = open_link(link)
    disabled = admin(synapse, admin_token, "PATCH", f"tokens/{token}", json={"disabled": True})
    assert disabled.status == 200 and disabled.json()["state"] == "disabled", disabled
    page = http.get(link)
    assert page.status == 404 and "This link does not work" in page.text
    assert post_form(synapse, token, "whiledisabled", (csrf, cookies)).status == 404
    admin(synapse, admin_token, "PATCH", f"tokens/{token}", json={"disabled": False})
    assert 'name="username"' in http.get(link).text
    assert admin(synapse, admin_token, "DELETE", f"tokens/{token}").status == 200
    assert http.get(link).status == 404
    assert accounts_of(synapse, token) == []


def test_a_client_with_an_invite_token_cannot_take_a_reserved_name(
    synapse: SynapseServer, admin_token: str, mailbox: SmtpCatcher
) -> None:
    assert ask(synapse, "clientheld", "clientheld@example.org").status == 202
    token = invite(synapse, admin_token)["token"]
    answer = register(synapse, "clientheld", token)
    assert not registered(answer)
    assert registered(register(synapse, "clientfree", token))


def test_each_person_is_limited_and_recorded_by_their_own_address(
    make_synapse: Any, synapse_db: str
) -> None:
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
    admin_token = own.register_user("limitadmin", "limit-admin-password-1", admin=True)
    token = invite(own, admin_token, uses=5)["token"]
    csrf, cookies, _ = open_link(own.gate_url + f"register?token={token}")
    session = (csrf, cookies)
    banned = post_form(own, token, "frombanned", session, client="203.0.113.99")
    assert banned.status == 403, banned.text
    first = post_form(own, token, "limitedone", session, client="198.51.100.7")
    assert first.status == 200, first.text
    again = post_form(own, token, "limitedtwo", session, client="198.51.100.7")
    assert again.status == 429 and again.headers["Retry-After"], again.text
    other = post_form(own, token, "limitedthree", session, client="198.51.100.8")
    assert other.status == 200, other.text
    rows = own.query(
        "SELECT localpart, ip, via FROM email_gate_token_uses WHERE token = ? ORDER BY localpart",
        (token,),
    )
    assert rows == [("limitedone", "198.51.100.7", "web"), ("limitedthree", "198.51.100.8", "web")]
