"""The whole story against a real Synapse on SQLite and PostgreSQL:
request page -> bound single-use token -> mail -> registration from a real client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    form_session,
    quiet,
    register,
    register_concurrently,
    registered,
    request_token,
    token_from,
)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    path = tmp_path_factory.mktemp(f"policy-{synapse_db}") / "policy.yaml"
    path.write_text("banned_usernames: []\n")
    return path


@pytest.fixture(scope="module")
def gate_config(policy_file: Path) -> dict[str, Any]:
    return {
        "policy_file": str(policy_file),
        "banned_usernames": ["(?i)admin", "^root$"],
        "email_cooldown": "1h",
        "token_lifetime": "24h",
        # Many requests from 127.0.0.1 in this module: limits are tested elsewhere.
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def test_page_has_the_form_with_username_and_email(synapse: SynapseServer) -> None:
    page = http.get(synapse.gate_url)
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert re.search(r'<form method="post"', page.text)
    assert 'name="username"' in page.text
    assert 'name="email"' in page.text
    assert "email_gate_csrf" in page.cookies


def test_form_post_sends_a_token_mail_bound_to_the_username(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    page = http.get(synapse.gate_url)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    answer = http.post(
        synapse.gate_url,
        form={"username": "alice", "email": "alice@example.org", "csrf": csrf.group(1)},
        cookies=page.cookies,
    )
    assert answer.status == 202, answer
    assert "Check your inbox" in answer.text

    mail = mailbox.wait_for(lambda m: m.to == "alice@example.org")
    token = token_from(mail)
    assert "@alice:test.local" in mail.text
    assert f"token={token}" in mail.text
    assert mail.html is not None and token in mail.html
    assert "test.local" in mail.subject


def test_form_post_without_the_csrf_cookie_is_refused_and_sends_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    answer = http.post(
        synapse.gate_url,
        form={"username": "mallory", "email": "mallory@example.org", "csrf": "forged"},
    )
    assert answer.status == 400
    assert "session expired" in answer.text
    assert quiet(mailbox, to="mallory@example.org") == []


def test_a_csrf_field_that_is_not_ascii_is_refused_like_a_wrong_one(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    _, cookies = form_session(synapse)
    answer = http.post(
        synapse.gate_url,
        form={"username": "mallory", "email": "mallory@example.org", "csrf": "é" * 32},
        cookies=cookies,
    )
    assert answer.status == 400
    assert "session expired" in answer.text
    assert quiet(mailbox, to="mallory@example.org") == []


def test_client_registers_under_the_reserved_name_whatever_it_asks_for(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "bob", "bob@example.org")
    response = register(synapse, "someone_else", token)
    assert registered(response), response
    assert response.user_id == "@bob:test.local"


def test_a_used_token_is_refused(synapse: SynapseServer, mailbox: SmtpCatcher) -> None:
    token = request_token(synapse, mailbox, "carol", "carol@example.org")
    assert registered(register(synapse, "carol", token))
    again = register(synapse, "carol2", token)
    assert not registered(again)
    assert again.transport_response.status == 401
    validity = http.get(
        synapse.url(
            f"/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"
        )
    )
    assert validity.json() == {"valid": False}


def test_ten_clients_racing_with_one_token_make_exactly_one_account(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "dave", "dave@example.org")
    responses = register_concurrently(synapse, [f"racer{i}" for i in range(10)], token)
    winners = [r for r in responses if registered(r)]
    assert len(winners) == 1, responses
    assert winners[0].user_id == "@dave:test.local"
    for name in (f"racer{i}" for i in range(10)):
        available = http.get(synapse.url(f"/_matrix/client/v3/register/available?username={name}"))
        assert available.status == 200, f"{name} was registered"


def test_banned_username_is_refused_plainly_and_sends_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    answer = ask(synapse, "SuperAdmin", "eve@example.org")
    assert answer.status == 400
    assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
    assert quiet(mailbox, to="eve@example.org") == []


def test_taken_username_is_refused(synapse: SynapseServer, mailbox: SmtpCatcher) -> None:
    token = request_token(synapse, mailbox, "frank", "frank@example.org")
    assert registered(register(synapse, "frank", token))
    answer = ask(synapse, "frank", "frank2@example.org")
    assert answer.status == 400
    assert answer.json()["errcode"] == "M_USER_IN_USE"


def test_invalid_username_and_email_are_refused(synapse: SynapseServer) -> None:
    bad_name = ask(synapse, "no spaces allowed", "x@example.org")
    assert bad_name.status == 400
    assert bad_name.json()["errcode"] == "M_INVALID_USERNAME"
    bad_mail = ask(synapse, "grace", "not-an-address")
    assert bad_mail.status == 400
    assert bad_mail.json()["errcode"] == "EMAIL_GATE_INVALID_EMAIL"


def test_email_side_outcomes_all_answer_the_same(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    first = ask(synapse, "henry", "henry@example.org")
    mailbox.wait_for(lambda m: m.to == "henry@example.org")
    in_cooldown = ask(synapse, "henry2", "henry@example.org")
    assert (first.status, first.body) == (in_cooldown.status, in_cooldown.body)
    assert first.status == 202
    assert first.json() == {"status": "accepted"}
    assert quiet(mailbox, to="henry@example.org") == []


def test_username_banned_after_the_token_was_issued_cannot_register(
    synapse: SynapseServer, mailbox: SmtpCatcher, policy_file: Path
) -> None:
    token = request_token(synapse, mailbox, "ivan", "ivan@example.org")
    policy_file.write_text(yaml.safe_dump({"banned_usernames": ["^ivan$"]}))
    reload = http.post(
        synapse.gate_url + "admin/reload",
        headers=synapse.auth_headers(synapse.register_admin("opsivan", "pw-ops-ivan")),
    )
    assert reload.status == 200, reload
    response = register(synapse, "ivan", token)
    assert not registered(response)
    available = http.get(synapse.url("/_matrix/client/v3/register/available?username=ivan"))
    assert available.status == 200


def test_landing_page_shows_the_reserved_id_and_the_token(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    token = request_token(synapse, mailbox, "judy", "judy@example.org")
    page = http.get(synapse.gate_url + f"register?token={token}")
    assert page.status == 200
    assert "@judy:test.local" in page.text
    assert token in page.text
    unknown = http.get(synapse.gate_url + "register?token=NOPE")
    assert unknown.status == 404
    assert "NOPE" not in unknown.text


def test_the_json_api_refuses_requests_sent_by_other_websites(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    foreign = http.post(
        synapse.gate_url + "api/request",
        json={"username": "crosssite", "email": "crosssite@example.org"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    assert foreign.json()["errcode"] == "EMAIL_GATE_FOREIGN_ORIGIN"
    own = http.post(
        synapse.gate_url + "api/request",
        json={"username": "samesite", "email": "samesite@example.org"},
        headers={"Origin": synapse.base_url},
    )
    assert own.status == 202
    assert quiet(mailbox, to="crosssite@example.org") == []
