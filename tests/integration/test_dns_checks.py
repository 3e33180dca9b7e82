"""DNS blocklists and mail-domain checks against a real Synapse (SQLite and
PostgreSQL), with a DNS server of our own on loopback (tests/harness/dns.py).

The client address comes from X-Forwarded-For, which 127.0.0.1 is trusted to send.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from synapse_email_gate.rules.proof_of_work import solve
from tests.harness import http
from tests.harness.dns import NXDOMAIN, SERVFAIL, SILENT, DnsServer, dns_server
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask_from,
    db_execute,
    mails_to,
    post_form,
    request_outcome,
    scrape,
    value,
    wait_until,
)

REFUSE, CHALLENGE, APPROVAL = "refuse.bl.test", "challenge.bl.test", "approval.bl.test"
LISTED = "203.0.113.10"  # in the refuse zone
LISTED_V6 = "2001:db8::bad"  # in the refuse zone, asked in nibbles
CHALLENGED = "203.0.113.11"
HELD = "203.0.113.12"  # listed for approval
SLOW = "203.0.113.20"  # the refuse zone never answers for it
BROKEN = "203.0.113.30"  # the refuse zone answers SERVFAIL for it
HALF_BROKEN = "203.0.113.31"  # SERVFAIL in the refuse zone, listed in the challenge zone
CLEAN = "203.0.113.40"
THROWAWAY_MX = "mx.throwaway.example.com"
DIFFICULTY = 6

_names = itertools.count()


def reverse(ip: str, zone: str) -> str:
    from synapse_email_gate.rules.dns import reverse_address

    reversed_ip = reverse_address(ip)
    assert reversed_ip is not None
    return f"{reversed_ip}.{zone}"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with dns_server() as server:
        server.a(reverse(LISTED, REFUSE), "127.0.0.2")
        server.a(reverse(LISTED_V6, REFUSE), "127.0.0.3")
        server.a(reverse(CHALLENGED, CHALLENGE), "127.0.0.2")
        server.a(reverse(HELD, APPROVAL), "127.0.0.2")
        server.answer(reverse(SLOW, REFUSE), "A", SILENT)
        server.answer(reverse(BROKEN, REFUSE), "A", SERVFAIL)
        server.answer(reverse(HALF_BROKEN, REFUSE), "A", SERVFAIL)
        server.a(reverse(HALF_BROKEN, CHALLENGE), "127.0.0.2")
        # mail domains
        server.mx("good.example.net", (10, "mx.good.test"))
        server.mx("nullmx.example.net", (0, "."))
        server.mx("throwaway-user.example.net", (10, "eu." + THROWAWAY_MX))
        server.a("aonly.example.net", "192.0.2.1")  # no MX: mail goes to the A record
        server.aaaa("aaaaonly.example.net", "2001:db8::25")
        server.answer("empty.example.net", "TXT", [])  # exists, but no MX, A or AAAA
        server.answer("nomail.example.net", "MX", NXDOMAIN)
        server.answer("slowmail.example.net", "MX", SILENT)
        server.answer("brokenmail.example.net", "MX", SERVFAIL)
        yield server


@pytest.fixture(scope="module")
def gate_config(dns: DnsServer) -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "challenge": {"enabled": False, "difficulty": DIFFICULTY},
        "dns": {"servers": [dns.address], "timeout": "300ms"},
        "dnsbl": {
            "zones": [
                {"zone": REFUSE, "action": "refuse"},
                {"zone": CHALLENGE, "action": "challenge"},
                {"zone": APPROVAL, "action": "approval"},
            ],
        },
        "mail_domain_check": {"enabled": True, "throwaway_mx": [THROWAWAY_MX]},
        "mail_sweep_interval": "500ms",
    }


def name() -> str:
    return f"dns{next(_names)}x{int(time.time() * 1000) % 100000}"


def ask(synapse: SynapseServer, ip: str, email: str | None = None, **extra: str) -> http.Response:
    username = name()
    body = {"username": username, "email": email or f"{username}@good.example.net", **extra}
    return http.post(synapse.gate_url + "api/request", json=body, headers={"X-Forwarded-For": ip})


# --- blocklists --------------------------------------------------------------


@pytest.mark.parametrize("ip", [LISTED, LISTED_V6, "::ffff:" + LISTED])
def test_refuse_zone_answers_403_like_an_ip_ban(synapse: SynapseServer, ip: str) -> None:
    answer = ask(synapse, ip)
    assert answer.status == 403, answer
    assert answer.json() == {
        "errcode": "M_FORBIDDEN",
        "error": "Requests from your network are not accepted.",
    }


def test_ipv6_is_asked_in_nibble_format(synapse: SynapseServer, dns: DnsServer) -> None:
    ask(synapse, "2001:db8::bad")
    assert dns.queries(reverse(LISTED_V6, REFUSE)) >= 1


def test_the_form_is_refused_too(synapse: SynapseServer) -> None:
    answer = post_form(synapse, name(), "x@good.example.net", headers={"X-Forwarded-For": LISTED})
    assert answer.status == 403, answer


def test_an_unlisted_address_is_accepted_and_its_answers_are_cached(
    synapse: SynapseServer, dns: DnsServer, mailbox: SmtpCatcher
) -> None:
    ip = "203.0.113.41"
    names = [reverse(ip, zone) for zone in (REFUSE, CHALLENGE, APPROVAL)]
    before = [dns.queries(n) for n in names]  # the DNS server outlives one database's server
    for _ in range(3):
        answer = ask(synapse, ip)
        assert answer.status == 202, answer
    assert [dns.queries(n) - b for n, b in zip(names, before, strict=True)] == [1, 1, 1]


def test_a_listing_is_cached(synapse: SynapseServer, dns: DnsServer) -> None:
    ip = "203.0.113.50"
    dns.a(reverse(ip, REFUSE), "127.0.0.2")
    before = dns.queries(reverse(ip, REFUSE))
    assert ask(synapse, ip).status == 403
    assert ask(synapse, ip).status == 403
    assert dns.queries(reverse(ip, REFUSE)) == before + 1


@pytest.mark.parametrize(("ip", "reason"), [(SLOW, "timeout"), (BROKEN, "servfail")])
def test_a_failing_zone_fails_open_and_is_counted(
    synapse: SynapseServer, dns: DnsServer, ip: str, reason: str
) -> None:
    before = value(
        scrape(synapse), "synapse_email_gate_dns_fail_open_total", check="dnsbl", reason=reason
    )
    started = time.monotonic()
    answer = ask(synapse, ip)
    took = time.monotonic() - started
    assert answer.status == 202, answer
    if reason == "timeout":
        assert 0.25 < took < 3, took
    samples = scrape(synapse)
    assert (
        value(samples, "synapse_email_gate_dns_fail_open_total", check="dnsbl", reason=reason)
        == before + 1
    )
    assert value(samples, "synapse_email_gate_dnsbl_lookups_total", zone=REFUSE, result=reason) >= 1
    # A failure is not remembered: the next request asks again.
    asked = dns.queries(reverse(ip, REFUSE))
    assert ask(synapse, ip).status == 202
    assert dns.queries(reverse(ip, REFUSE)) == asked + 1


def test_a_failing_zone_leaves_the_others_in_force(synapse: SynapseServer) -> None:
    answer = ask(synapse, HALF_BROKEN)
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_CHALLENGE_REQUIRED"


def test_challenge_zone_requires_the_challenge(synapse: SynapseServer) -> None:
    refused = ask(synapse, CHALLENGED)
    assert refused.status == 400, refused
    assert refused.json()["errcode"] == "EMAIL_GATE_CHALLENGE_REQUIRED"
    # Challenges are handed out although the challenge is off for everyone else.
    got = http.get(synapse.gate_url + "api/challenge")
    assert got.status == 200, got
    challenge = got.json()["challenge"]
    nonce = solve(challenge, got.json()["difficulty"])
    solved = ask(synapse, CHALLENGED, challenge=challenge, nonce=nonce)
    assert solved.status == 202, solved
    replayed = ask(synapse, CHALLENGED, challenge=challenge, nonce=nonce)
    assert replayed.json()["errcode"] == "EMAIL_GATE_CHALLENGE_REPLAYED"
    # Everyone else needs none.
    assert ask(synapse, CLEAN).status == 202


def test_challenge_zone_shows_the_challenge_on_the_page(synapse: SynapseServer) -> None:
    listed = http.get(synapse.gate_url, headers={"X-Forwarded-For": CHALLENGED})
    clean = http.get(synapse.gate_url, headers={"X-Forwarded-For": CLEAN})
    assert "email_gate_challenge.js" in listed.text
    assert "email_gate_challenge.js" not in clean.text


def test_approval_zone_sends_the_request_to_the_moderators(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    username = name()
    address = f"{username}@good.example.net"
    answer = http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": address},
        headers={"X-Forwarded-For": HELD},
    )
    assert answer.status == 202, answer
    assert request_outcome(synapse, username) == ("verifying", None)
    wait_until(lambda: mails_to(mailbox, address), "the address-check mail")
    (mail,) = mails_to(mailbox, address)
    assert "/verify?code=" in mail.text
    assert "Registration token" not in mail.text
    # An unlisted address gets its token straight away.
    other = name()
    assert ask_from(synapse, other, f"{other}@good.example.net", CLEAN).status == 202
    assert request_outcome(synapse, other) == ("issued", None)


def test_an_orphan_listed_for_approval_still_goes_to_approval(synapse: SynapseServer) -> None:
    """A request recorded but not decided (its process died) is decided by the sweep,
    which asks the blocklists again about the address it came from."""
    now = int(time.time() * 1000)
    for localpart, ip in (("orphanheld", HELD), ("orphanclean", CLEAN)):
        address = f"{localpart}@good.example.net"
        db_execute(
            synapse,
            "INSERT INTO email_gate_requests (id, created_ts, updated_ts, localpart, email, "
            "email_key, ip, lang, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'en', 'received')",
            (f"orphan-{localpart}", now - 60_000, now - 60_000, localpart, address, address, ip),
        )
    assert request_outcome(synapse, "orphanheld", timeout=20) == ("verifying", None)
    assert request_outcome(synapse, "orphanclean", timeout=20) == ("issued", None)


# --- mail domains ------------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [
        "nomail.example.net",
        "unknown.example.net",
        "empty.example.net",
        "nullmx.example.net",
        "throwaway-user.example.net",
    ],
)
def test_a_domain_without_personal_mail_is_refused_like_a_disposable_one(
    synapse: SynapseServer, domain: str
) -> None:
    answer = ask(synapse, CLEAN, email=f"someone@{domain}")
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_DOMAIN_DISPOSABLE"


@pytest.mark.parametrize(
    "domain", ["good.example.net", "aonly.example.net", "aaaaonly.example.net"]
)
def test_a_domain_that_takes_mail_is_accepted(synapse: SynapseServer, domain: str) -> None:
    answer = ask(synapse, CLEAN, email=f"someone@{domain}")
    assert answer.status == 202, answer


@pytest.mark.parametrize(
    ("domain", "reason"),
    [("slowmail.example.net", "timeout"), ("brokenmail.example.net", "servfail")],
)
def test_a_failing_mail_domain_lookup_fails_open(
    synapse: SynapseServer, domain: str, reason: str
) -> None:
    before = value(
        scrape(synapse),
        "synapse_email_gate_dns_fail_open_total",
        check="mail_domain",
        reason=reason,
    )
    answer = ask(synapse, CLEAN, email=f"someone@{domain}")
    assert answer.status == 202, answer
    after = value(
        scrape(synapse),
        "synapse_email_gate_dns_fail_open_total",
        check="mail_domain",
        reason=reason,
    )
    assert after == before + 1


def test_mail_domain_answers_are_cached(synapse: SynapseServer, dns: DnsServer) -> None:
    dns.mx("cached.example.net", (10, "mx.cached.test"))
    dns.answer("cachedbad.example.net", "MX", NXDOMAIN)
    before = dns.queries("cached.example.net", "MX"), dns.queries("cachedbad.example.net", "MX")
    for _ in range(3):
        assert ask(synapse, CLEAN, email="a@cached.example.net").status == 202
        assert ask(synapse, CLEAN, email="a@cachedbad.example.net").status == 400
    after = dns.queries("cached.example.net", "MX"), dns.queries("cachedbad.example.net", "MX")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
