"""IP bans, trusted proxies, address bans, disposable and allowed domains, username
bans, against a real Synapse on SQLite and PostgreSQL.

The client address comes from X-Forwarded-For, which 127.0.0.1 (where the tests
connect from) is trusted to send here; a second server, which trusts nobody,
shows that a spoofed header changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import module_config_for
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    ask_from,
    expect_no_mail,
    post_form,
    recorded_requests,
    request_outcome,
    request_token,
)

BANNED = "banned"
BANNED_IPS = ["203.0.113.66", "198.51.100.128/25", "2001:db8:bad::/48"]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"],
        "banned_ips": BANNED_IPS,
        "banned_emails": ["spam@example.com", "*@junk.example.net", "/^evil[0-9]+@/"],
        "banned_usernames": ["Slur", "^root$"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def untrusting(smtp: SmtpCatcher) -> Iterator[SynapseServer]:
    """A second server (SQLite: nothing here is about storage) that trusts no proxy and
    only admits addresses at example.org (and mailinator.com, disposable or not)."""
    config = {
        "banned_ips": ["203.0.113.66"],
        "allowed_email_domains": ["example.org", "mailinator.com"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }
    server = SynapseServer(module_config_for(smtp, config))
    try:
        server.start()
        yield server
    finally:
        server.close()


def recorded_ip(synapse: SynapseServer, localpart: str) -> str:
    request_outcome(synapse, localpart)
    rows = recorded_requests(synapse, localpart)
    assert len(rows) == 1, rows
    return str(rows[0][3])


def assert_ip_banned(answer: http.Response) -> None:
    assert answer.status == 403, answer
    assert answer.json()["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize(
    "ip",
    [
        "203.0.113.66",
        "198.51.100.128",
        "198.51.100.200",
        "198.51.100.255",
        "2001:db8:bad::1",
        "2001:db8:bad:ffff:ffff:ffff:ffff:ffff",
        "2001:DB8:BAD:0:0:0:0:2",
        "::ffff:203.0.113.66",
    ],
)
def test_banned_addresses_and_ranges_get_403_and_leave_no_trace(
    synapse: SynapseServer, mailbox: SmtpCatcher, ip: str
) -> None:
    name = "ipban" + "".join(c for c in ip if c.isalnum()).lower()
    assert_ip_banned(ask_from(synapse, name, f"{name}@example.org", ip))
    page = post_form(synapse, name, f"{name}@example.org", headers={"X-Forwarded-For": ip})
    assert page.status == 403
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert recorded_requests(synapse, name) == []


def test_neighbours_of_banned_ranges_are_served(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    for i, ip in enumerate(["203.0.113.65", "198.51.100.127", "2001:db8:bae::1", "2001:db8::1"]):
        answer = ask_from(synapse, f"neighbour{i}", f"neighbour{i}@example.org", ip)
        assert answer.status == 202, (ip, answer)
        mailbox.wait_for_rcpt(f"neighbour{i}@example.org")
        assert recorded_ip(synapse, f"neighbour{i}") == ip


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("203.0.113.66, 10.1.2.3", BANNED),  # trusted proxies on the right are skipped
        ("203.0.113.66, 10.1.2.3, 10.9.9.9", BANNED),
        ("198.51.100.7, 203.0.113.66", BANNED),  # the rightmost untrusted hop is the client
        ("2001:db8:bad::5, 2001:db8:ffff::1", BANNED),
        ("198.51.100.7:4711, [2001:db8:ffff::2]:443", "198.51.100.7"),
        ("203.0.113.66, 198.51.100.7", "198.51.100.7"),  # what the client wrote is ignored
        ("203.0.113.66,198.51.100.8", "198.51.100.8"),
        ("203.0.113.66, junk", "127.0.0.1"),  # nothing left of a junk hop is believed
    ],
)
def test_x_forwarded_for_from_a_trusted_proxy_names_the_rightmost_untrusted_hop(
    synapse: SynapseServer, mailbox: SmtpCatcher, forwarded: str, client: str
) -> None:
    name = "xff" + "".join(c for c in forwarded if c.isalnum())[:40].lower()
    answer = ask(synapse, name, f"{name}@example.org", **{"X-Forwarded-For": forwarded})
    if client == BANNED:
        assert_ip_banned(answer)
        assert recorded_requests(synapse, name) == []
    else:
        assert answer.status == 202, answer
        assert recorded_ip(synapse, name) == client
        mailbox.wait_for_rcpt(f"{name}@example.org")


def test_x_forwarded_for_from_an_untrusted_peer_changes_nothing(
    untrusting: SynapseServer, mailbox: SmtpCatcher
) -> None:
    # A banned address in the header does not get the peer banned ...
    answer = ask_from(untrusting, "spoof1", "spoof1@example.org", "203.0.113.66")
    assert answer.status == 202, answer
    assert recorded_ip(untrusting, "spoof1") == "127.0.0.1"
    mailbox.wait_for_rcpt("spoof1@example.org")
    # ... and another address in it does not make the peer someone else.
    for i, forwarded in enumerate(["198.51.100.9", "10.0.0.1, 198.51.100.10", "::1"], start=2):
        answer = ask_from(untrusting, f"spoof{i}", f"spoof{i}@example.org", forwarded)
        assert answer.status == 202, answer
        assert recorded_ip(untrusting, f"spoof{i}") == "127.0.0.1"
        mailbox.wait_for_rcpt(f"spoof{i}@example.org")


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("banexact1", "spam@example.com"),
        ("banexact2", "SPAM+promo@Example.COM"),  # the same mailbox, normalised
        ("bandomain1", "someone@junk.example.net"),
        ("bandomain2", "someone@mail.junk.example.net"),  # *@domain covers subdomains
        ("banregex1", "evil42@example.org"),
        ("banregex2", "Evil7+x@example.org"),  # searched in the normalised address
    ],
)
def test_individually_banned_addresses_get_202_and_no_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher, name: str, address: str
) -> None:
    answer = ask_from(synapse, name, address, "203.0.113.90")
    assert answer.status == 202, answer
    assert answer.json() == {"status": "accepted"}
    expect_no_mail(synapse, mailbox, name, address, reason="email_banned")


def test_addresses_near_banned_ones_are_mailed(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    for i, address in enumerate(
        ["spam2@example.com", "someone@notjunk.example.net", "evilx@example.org"]
    ):
        request_token(synapse, mailbox, f"nearban{i}", address, ip="203.0.113.91")


@pytest.mark.parametrize(
    "address",
    ["x@mailinator.com", "X@Mailinator.COM", "x@sub.mailinator.com", "x@guerrillamail.com"],
)
def test_disposable_domains_are_refused_plainly(
    synapse: SynapseServer, mailbox: SmtpCatcher, address: str
) -> None:
    name = "disp" + "".join(c for c in address if c.isalnum()).lower()
    answer = ask_from(synapse, name, address, "203.0.113.92")
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_DOMAIN_DISPOSABLE"
    assert recorded_requests(synapse, name) == []


def test_allowed_email_domains_refuse_every_other_domain(
    untrusting: SynapseServer, mailbox: SmtpCatcher
) -> None:
    for i, address in enumerate(["x@example.com", "x@example.org.evil.net", "x@gmail.com"]):
        answer = ask(untrusting, f"notallowed{i}", address)
        assert answer.status == 400, (address, answer)
        assert answer.json()["errcode"] == "EMAIL_GATE_DOMAIN_NOT_ALLOWED", address
    # The listed domains and their subdomains are welcome, even a disposable one.
    welcome = ["a@example.org", "b@lists.example.org", "c@mailinator.com"]
    for i, address in enumerate(welcome):
        assert ask(untrusting, f"allowed{i}", address).status == 202, address
        mailbox.wait_for_rcpt(address)
    time.sleep(0.2)
    assert sorted(m.to for m in mailbox.messages) == sorted(welcome)


def test_banned_usernames_are_searched_case_insensitively(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    for name in ["slur", "xSLURx", "@a_slur_b:test.local", "root", "ROOT"]:
        answer = ask_from(synapse, name, "bannedname@example.org", "203.0.113.93")
        assert answer.status == 400, (name, answer)
        assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED", name
    request_token(synapse, mailbox, "rootbeer", "rootbeer@example.org", ip="203.0.113.93")
