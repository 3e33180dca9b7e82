"""Rate limits, cooldown, one account per address, email normalisation and strict
address parsing, against a real Synapse on SQLite and PostgreSQL.

Every test speaks as its own client address (X-Forwarded-For from the trusted
proxy 127.0.0.1), so the small per-IP burst of this module is per test.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask_from,
    expect_no_mail,
    post_form,
    recorded_requests,
    register,
    registered,
    request_outcome,
    request_token,
    token_count,
)

PER_IP_BURST = 3
COOLDOWN_S = 5.0
# The same mailbox is held back by its cooldown, or once that ran out (on a slow
# machine) by the per-address bucket: either way the identity was recognised.
SAME_MAILBOX = ("cooldown", "rate_limited_email")
SLOW = 0.001  # per second: no refill worth mentioning during a test


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "email_cooldown": f"{int(COOLDOWN_S)}s",
        "multiple_users_per_email": False,
        "rate_limits": {
            "per_ip": {"burst": PER_IP_BURST, "per_second": SLOW},
            "per_email": {"burst": 1, "per_second": SLOW / 10},
            "global": {"burst": 100_000, "per_second": 1000},
        },
    }


class Primed:
    """Addresses mailed when the module starts, so their cooldown has run out by the
    time the tests that need that get to them."""

    def __init__(self, synapse: SynapseServer, smtp: SmtpCatcher) -> None:
        self.per_email = "primed.pe@example.org"
        self.used = "primed.used@example.org"
        smtp.clear()
        request_token(synapse, smtp, "primedpe", self.per_email, ip="198.51.100.250")
        token = request_token(synapse, smtp, "primedused", self.used, ip="198.51.100.251")
        assert registered(register(synapse, "primedused", token))
        self.mailed_at = time.monotonic()

    def wait_out_cooldown(self) -> None:
        left = self.mailed_at + COOLDOWN_S + 0.3 - time.monotonic()
        if left > 0:
            time.sleep(left)


@pytest.fixture(scope="module", autouse=True)
def primed(synapse: SynapseServer, smtp: SmtpCatcher) -> Primed:
    return Primed(synapse, smtp)


def assert_rate_limited(answer: http.Response) -> None:
    assert answer.status == 429, answer
    body = answer.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED", body
    retry_after = answer.header("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), answer.headers
    assert int(retry_after) >= 1
    # Matrix clients read retry_after_ms; it must agree with the header.
    assert abs(body["retry_after_ms"] - int(retry_after) * 1000) < 1000, (body, retry_after)


def flood(synapse: SynapseServer, prefix: str, ips: list[str]) -> list[http.Response]:
    """One request per entry of ``ips`` (distinct names and addresses), 12 at a time."""

    def one(i: int) -> http.Response:
        return ask_from(synapse, f"{prefix}{i}", f"{prefix}{i}@example.org", ips[i])

    with ThreadPoolExecutor(max_workers=12) as pool:
        return list(pool.map(one, range(len(ips))))


def test_a_flood_from_one_ip_gets_at_most_the_burst(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    tokens_before = token_count(synapse)
    answers = flood(synapse, "flood", ["203.0.113.10"] * 60)

    accepted = [i for i, a in enumerate(answers) if a.status == 202]
    assert len(accepted) == PER_IP_BURST, [a.status for a in answers]
    for i, answer in enumerate(answers):
        if i not in accepted:
            assert_rate_limited(answer)

    for i in accepted:
        assert request_outcome(synapse, f"flood{i}") == ("issued", None)
        mailbox.wait_for_rcpt(f"flood{i}@example.org")
    time.sleep(0.3)
    mailed = {r for m in mailbox.messages for r in m.rcpt_tos}
    assert mailed == {f"flood{i}@example.org" for i in accepted}
    # A refused request leaves no trace: no request, no token.
    assert len(recorded_requests(synapse, "flood%")) == PER_IP_BURST
    assert token_count(synapse) - tokens_before == PER_IP_BURST

    # The form is limited the same way, and says so in HTML with Retry-After.
    page = post_form(
        synapse, "floodform", "floodform@example.org", headers={"X-Forwarded-For": "203.0.113.10"}
    )
    assert page.status == 429, page
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert (page.header("Retry-After") or "").isdigit()
    # Another client is not affected.
    assert ask_from(synapse, "floodother", "floodother@example.org", "203.0.113.11").status == 202
    mailbox.wait_for_rcpt("floodother@example.org")


def test_the_global_limit_holds_across_client_addresses(
    make_synapse: Any, synapse_db: str, mailbox: SmtpCatcher
) -> None:
    server = make_synapse(
        {
            "trusted_proxies": ["127.0.0.1"],
            "rate_limits": {
                "per_ip": {"burst": 100, "per_second": 100},
                "global": {"burst": 4, "per_second": SLOW},
            },
        },
        db=synapse_db,
    )
    answers = flood(server, "glob", [f"198.51.100.{i + 1}" for i in range(12)])
    accepted = [i for i, a in enumerate(answers) if a.status == 202]
    assert len(accepted) == 4, [a.status for a in answers]
    for i, answer in enumerate(answers):
        if i not in accepted:
            assert_rate_limited(answer)
    for i in accepted:
        mailbox.wait_for_rcpt(f"glob{i}@example.org")
    time.sleep(0.3)
    assert len(mailbox.messages) == 4
    assert len(recorded_requests(server, "glob%")) == 4
    assert token_count(server) == 4


def test_a_second_request_within_the_cooldown_sends_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "cool1", "cool@example.org", ip="203.0.113.20")
    again = ask_from(synapse, "cool2", "cool@example.org", "203.0.113.21")
    assert again.status == 202
    assert again.json() == {"status": "accepted"}
    expect_no_mail(
        synapse, mailbox, "cool2", "cool@example.org", reason="cooldown", mailed_before=1
    )


def test_gmail_dots_tags_case_and_alias_are_one_mailbox(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "gmail1", "alice@gmail.com", ip="203.0.113.50")
    for i, spelling in enumerate(
        ["A.l.i.c.e+x@GMail.com", "ALICE@gmail.com", "a.lice+spam@googlemail.com"], start=2
    ):
        answer = ask_from(synapse, f"gmail{i}", spelling, f"203.0.113.5{i}")
        assert answer.status == 202, (spelling, answer)
        expect_no_mail(synapse, mailbox, f"gmail{i}", spelling, reason=SAME_MAILBOX, settle=0)
    time.sleep(0.2)
    assert [m.to for m in mailbox.messages] == ["alice@gmail.com"]


def test_case_is_ignored_but_dots_count_elsewhere(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    first = ask_from(synapse, "case1", "Bob.Case+news@Example.ORG", "203.0.113.60")
    assert first.status == 202
    mail = mailbox.wait_for_rcpt("Bob.Case+news@example.org")
    assert mail.to == "Bob.Case+news@example.org"  # mailed as typed, domain lowercased
    again = ask_from(synapse, "case2", "bob.case@EXAMPLE.org", "203.0.113.61")
    assert again.status == 202
    expect_no_mail(synapse, mailbox, "case2", "bob.case@example.org", reason=SAME_MAILBOX)
    assert len(mailbox.messages) == 1
    # Outside gmail.com, dots are part of the mailbox: another person.
    request_token(synapse, mailbox, "case3", "bobcase@example.org", ip="203.0.113.62")


def test_idna_domains_are_one_identity_in_either_form(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    first = ask_from(synapse, "idn1", "idn@Bücher.de", "203.0.113.70")
    assert first.status == 202, first
    mail = mailbox.wait_for_rcpt("idn@xn--bcher-kva.de")
    assert mail.to == "idn@xn--bcher-kva.de"
    again = ask_from(synapse, "idn2", "IDN@XN--BCHER-KVA.DE", "203.0.113.71")
    assert again.status == 202
    expect_no_mail(
        synapse, mailbox, "idn2", "idn@xn--bcher-kva.de", reason=SAME_MAILBOX, mailed_before=1
    )


MALFORMED = [
    "crlf@example.org\r\nBcc: victim@example.org",
    "lf@example.org\nBcc: victim@example.org",
    "cr@example.org\rX: y",
    "nul\x00@example.org",
    "one@example.org, two@example.org",
    "one@example.org;two@example.org",
    "one@example.org two@example.org",
    "Alice <alice@example.org>",
    "<alice@example.org>",
    "alice@example.org <victim@example.org>",
    '"alice"@example.org',
    '"victim@example.org"@example.org',
    "a@[127.0.0.1]",
    "a@127.0.0.1",
    "no-at-sign.example.org",
    "two@@example.org",
    "a@b@example.org",
    "(comment)a@example.org",
    "a\u202e@example.org",
    "@example.org",
    "a@",
    "x" * 300 + "@example.org",
]


def test_malformed_addresses_are_refused_and_send_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    for i, address in enumerate(MALFORMED):
        answer = ask_from(synapse, f"malformed{i}", address, "203.0.113.80")
        assert answer.status == 400, (address, answer)
        # A NUL is refused by the JSON reader for any field, before the address is read.
        expected = "M_BAD_JSON" if "\x00" in address else "EMAIL_GATE_INVALID_EMAIL"
        assert answer.json()["errcode"] == expected, (address, answer)
    assert recorded_requests(synapse, "malformed%") == []
    time.sleep(0.3)
    assert mailbox.messages == []
    # Refusals take nothing from the client's bucket.
    assert ask_from(synapse, "malformedok", "fine@example.org", "203.0.113.80").status == 202


# Last, so that the primed addresses are out of cooldown by now.


def test_the_per_email_limit_answers_202_and_sends_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher, primed: Primed
) -> None:
    primed.wait_out_cooldown()  # so it is the per-address bucket that says no
    answer = ask_from(synapse, "perEmail2", primed.per_email, "203.0.113.30")
    assert answer.status == 202
    assert answer.json() == {"status": "accepted"}
    expect_no_mail(synapse, mailbox, "peremail2", primed.per_email, reason="rate_limited_email")


def test_an_address_that_made_an_account_gets_no_second_token(
    synapse: SynapseServer, mailbox: SmtpCatcher, primed: Primed
) -> None:
    primed.wait_out_cooldown()  # so it is not the cooldown that says no
    answer = ask_from(synapse, "primedused2", primed.used, "203.0.113.40")
    assert answer.status == 202
    assert answer.json() == {"status": "accepted"}
    expect_no_mail(synapse, mailbox, "primedused2", primed.used, reason="already_used")
