"""No token or code of ours reaches Synapse's log, at any level, while every link still
works without JavaScript: a real Synapse logging at DEBUG (its access log's "Received
request" lines included), on SQLite and PostgreSQL.

Followed as a person would: the mailed `register?token=` link (and its language
links), finishing registration on that page, an invite link `register?token=`, the
admin API's `admin/tokens/<token>`, and in approval mode the `verify?code=` link and
its button."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import confirm_address, login, token_from

PASSWORD = "kiwi lamp orbit fjord"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
LINK = re.compile(r"(http://\S+/(?:register\?token|verify\?code)=\S+)")


def everything_logged(server: SynapseServer) -> str:
    err = server.stderr_file.read_text(errors="replace") if server.stderr_file.exists() else ""
    return server.log_text() + err


def assert_secret_free(server: SynapseServer, secrets: list[str]) -> None:
    logged = everything_logged(server)
    for secret in secrets:
        assert len(secret) >= 8, secret
        assert secret not in logged, f"{secret!r} is in the log"
    assert "Received request" in logged  # the DEBUG access lines are there
    assert "?token=<redacted>" in logged or "?code=<redacted>" in logged


def assert_no_referrer(page: http.Response) -> None:
    assert page.header("Referrer-Policy") == "no-referrer", page


def mailed_link(mailbox: SmtpCatcher, address: str) -> tuple[str, str]:
    """The link in the mail to `address`, and the mail's text."""
    mail = mailbox.wait_for(lambda m: m.to == address)
    found = LINK.search(mail.text)
    assert found, mail.text
    return found.group(1), mail.text


def test_mailed_and_invite_tokens_stay_out_of_the_log(
    synapse_db: str, make_synapse: Callable[..., SynapseServer], mailbox: SmtpCatcher
) -> None:
    server = make_synapse({}, db=synapse_db, log_level="DEBUG")
    admin = server.register_admin("ops", "ops password long")
    answer = http.post(
        server.gate_url + "api/request", json={"username": "alice", "email": "alice@example.org"}
    )
    assert answer.status == 202, answer
    link, text = mailed_link(mailbox, "alice@example.org")
    token = token_from(mailbox.messages[-1])
    assert link.endswith(f"register?token={token}") and token in text

    # The mailed link, as a browser opens it, and a language link of that page.
    page = http.get(link)
    assert page.status == 200, page
    assert "@alice:test.local" in page.text and token in page.text
    assert_no_referrer(page)
    german = re.search(r'href="([^"]*register\?[^"]*lang=de[^"]*)"', page.text)
    assert german, page.text
    page_de = http.get(server.base_url + german.group(1).replace("&amp;", "&"))
    assert page_de.status == 200 and 'lang="de"' in page_de.text, page_de

    # Finishing registration on that page, without JavaScript: a plain form post.
    csrf = CSRF_FIELD.search(page.text)
    assert csrf, page.text
    done = http.post(
        server.gate_url + "register",
        form={
            "csrf": csrf.group(1),
            "token": token,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        cookies=page.cookies,
    )
    assert done.status == 200, done
    assert login(server, "alice", PASSWORD).status == 200

    # An invite token: made, shown through the admin API, and opened as an invite link.
    made = http.post(
        server.gate_url + "admin/tokens",
        json={"uses_allowed": 1},
        headers=server.auth_headers(admin),
    )
    assert made.status == 201, made
    invite = made.json()["token"]
    shown = http.get(server.gate_url + f"admin/tokens/{invite}", headers=server.auth_headers(admin))
    assert shown.status == 200 and shown.json()["token"] == invite, shown
    # Whatever the landing page makes of an invite token, its URL is not logged.
    invite_page = http.get(server.gate_url + f"register?token={invite}")
    assert invite_page.status < 500, invite_page
    assert_no_referrer(invite_page)

    assert_secret_free(server, [token, invite])


def test_the_address_check_code_stays_out_of_the_log(
    synapse_db: str, make_synapse: Callable[..., SynapseServer], mailbox: SmtpCatcher
) -> None:
    server = make_synapse({"approval": "required"}, db=synapse_db, log_level="DEBUG")
    answer = http.post(
        server.gate_url + "api/request",
        json={
            "username": "carol",
            "email": "carol@example.org",
            "reason": "I would like to join the reading group.",
        },
    )
    assert answer.status == 202, answer
    link, _ = mailed_link(mailbox, "carol@example.org")
    code = link.rsplit("code=", 1)[1]
    page = http.get(link)
    assert page.status == 200, page
    assert f'name="code" value="{code}"' in page.text  # a button, no JavaScript needed
    assert_no_referrer(page)
    confirmed = confirm_address(server, mailbox.messages[-1])
    assert confirmed.status == 200, confirmed
    rows = server.query("SELECT status FROM email_gate_requests WHERE localpart = 'carol'")
    assert rows == [("pending",)]
    assert_secret_free(server, [code])
