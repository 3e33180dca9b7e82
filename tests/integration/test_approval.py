"""approval: required, against a real Synapse: reason -> address check -> moderator -> account."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    confirm_address,
    quiet,
    register,
    registered,
    token_from,
)

REASON = "I am in the chess club and would like to join the club's rooms here."
MODERATOR_MAIL = "moderators@example.org"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "approval": "required",
        "approval_reason_min_length": 30,
        "approval_notify_emails": [MODERATOR_MAIL],
        "moderators": ["@mod:test.local"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


def ask(synapse: SynapseServer, username: str, email: str, reason: str = REASON) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": email, "reason": reason},
    )


def pending_request(synapse: SynapseServer, mailbox: SmtpCatcher, username: str) -> str:
    email = f"{username}@example.org"
    assert ask(synapse, username, email).status == 202
    confirmed = confirm_address(synapse, mailbox.wait_for(lambda m: m.to == email))
    assert confirmed.status == 200 and "confirmed" in confirmed.text
    notice = mailbox.wait_for(lambda m: m.to == MODERATOR_MAIL and username in m.text)
    assert REASON in notice.text
    match = re.search(r"Request ID: (\S+)", notice.text)
    assert match
    return match.group(1)


def decide(synapse: SynapseServer, token: str, request_id: str, verb: str, **body: Any) -> Any:
    return http.post(
        synapse.gate_url + f"admin/requests/{request_id}/{verb}",
        json=body,
        headers=synapse.auth_headers(token),
    )


def test_a_short_reason_is_refused_with_the_minimum(synapse: SynapseServer) -> None:
    answer = ask(synapse, "shorty", "shorty@example.org", reason="pls")
    assert answer.status == 400
    assert answer.json()["errcode"] == "EMAIL_GATE_REASON_TOO_SHORT"
    assert "30" in answer.json()["error"]


def test_the_page_asks_for_a_reason(synapse: SynapseServer) -> None:
    assert 'name="reason"' in http.get(synapse.gate_url).text


def test_approved_request_gets_a_token_that_makes_the_account(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    request_id = pending_request(synapse, mailbox, "approveme")
    listed = http.get(
        synapse.gate_url + "admin/requests?status=pending", headers=synapse.auth_headers(mod_token)
    ).json()["requests"]
    assert request_id in [r["id"] for r in listed]

    approved = decide(synapse, mod_token, request_id, "approve")
    assert approved.status == 200, approved
    assert approved.json()["status"] == "issued"
    token = token_from(
        mailbox.wait_for(lambda m: m.to == "approveme@example.org" and "token" in m.text.lower())
    )
    response = register(synapse, "whatever", token)
    assert registered(response) and response.user_id == "@approveme:test.local"
    assert decide(synapse, mod_token, request_id, "approve").status == 409


def test_denied_request_gets_a_polite_mail_with_the_message_and_no_token(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    request_id = pending_request(synapse, mailbox, "denyme")
    denied = decide(synapse, mod_token, request_id, "deny", message="We are full this month.")
    assert denied.status == 200 and denied.json()["status"] == "denied"
    mail = mailbox.wait_for(lambda m: m.to == "denyme@example.org" and "decided" in m.text)
    assert "We are full this month." in mail.text
    assert "Registration token" not in mail.text


def test_nothing_is_sent_to_moderators_before_the_address_is_confirmed(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    assert ask(synapse, "unconfirmed", "unconfirmed@example.org").status == 202
    mailbox.wait_for(lambda m: m.to == "unconfirmed@example.org")
    assert quiet(mailbox, to=MODERATOR_MAIL) == []


def test_a_verification_link_works_once(synapse: SynapseServer, mailbox: SmtpCatcher) -> None:
    email = "twice@example.org"
    assert ask(synapse, "twice", email).status == 202
    mail = mailbox.wait_for(lambda m: m.to == email)
    assert confirm_address(synapse, mail).status == 200
    again = confirm_address(synapse, mail)
    assert again.status == 404 and "not valid" in again.text


def test_only_moderators_decide(synapse: SynapseServer, mailbox: SmtpCatcher) -> None:
    request_id = pending_request(synapse, mailbox, "nobodydecides")
    user = synapse.register_user("someuser", "some-password-1")
    assert decide(synapse, user, request_id, "approve").status == 403
