"""Rate limits per network and per mail domain, against a real Synapse on SQLite and
PostgreSQL: addresses rotated inside one /24 (or /48) get 429 once the network's
bucket is empty, addresses rotated inside one mail domain get the same 202 as
ever but no mail; another network and another domain pass meanwhile.

Clients speak through X-Forwarded-For from the trusted proxy 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from, expect_no_mail, request_outcome
from tests.integration.test_limits import assert_rate_limited

NETWORK_BURST = 4
DOMAIN_BURST = 3
SLOW = 0.0001  # per second: no refill worth mentioning during a test


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "email_cooldown": "1s",
        "rate_limits": {
            "per_ip": {"burst": 100, "per_second": 10},
            "per_email": {"burst": 100, "per_second": 10},
            "global": {"burst": 100_000, "per_second": 1000},
            "per_network": {"burst": NETWORK_BURST, "per_second": SLOW},
            "per_email_domain": {"burst": DOMAIN_BURST, "per_second": SLOW},
        },
    }


def test_addresses_rotated_inside_one_ipv4_24_share_its_limit(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    answers = [
        ask_from(synapse, f"rot4n{i}", f"rot4n{i}@n{i}.example", f"198.51.100.{10 + i}")
        for i in range(NETWORK_BURST + 3)
    ]
    assert [a.status for a in answers[:NETWORK_BURST]] == [202] * NETWORK_BURST
    for answer in answers[NETWORK_BURST:]:
        assert_rate_limited(answer)
    # The refused requests were not recorded; the accepted ones were mailed.
    for i in range(NETWORK_BURST):
        assert request_outcome(synapse, f"rot4n{i}") == ("issued", None)
    # Another /24 right next to it, and the same one in a new /24, pass.
    assert ask_from(synapse, "rot4other", "rot4other@other.example", "198.51.101.10").status == 202
    assert request_outcome(synapse, "rot4other") == ("issued", None)


def test_ipv6_clients_share_their_48(synapse: SynapseServer) -> None:
    answers = [
        ask_from(synapse, f"rot6n{i}", f"rot6n{i}@v{i}.example", f"2001:db8:aa:{i}::1")
        for i in range(NETWORK_BURST + 1)
    ]
    assert [a.status for a in answers[:NETWORK_BURST]] == [202] * NETWORK_BURST
    assert_rate_limited(answers[NETWORK_BURST])
    assert ask_from(synapse, "rot6other", "rot6other@v.example", "2001:db8:bb::1").status == 202


def test_addresses_rotated_inside_one_domain_answer_202_but_get_no_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    # Each from its own /24, each a different mailbox and subdomain of one domain.
    count = DOMAIN_BURST + 2
    answers = [
        ask_from(synapse, f"rotd{i}", f"user{i}@mx{i}.spamwave.example", f"10.{i}.0.1")
        for i in range(count)
    ]
    # Like the per-address limit, the domain's says nothing: the same 202 for all.
    assert {(a.status, a.body) for a in answers} == {(answers[0].status, answers[0].body)}
    assert answers[0].status == 202 and answers[0].json() == {"status": "accepted"}
    outcomes = [request_outcome(synapse, f"rotd{i}") for i in range(count)]
    assert outcomes[:DOMAIN_BURST] == [("issued", None)] * DOMAIN_BURST
    for i in range(DOMAIN_BURST, count):
        expect_no_mail(
            synapse,
            mailbox,
            f"rotd{i}",
            f"user{i}@mx{i}.spamwave.example",
            reason="rate_limited_email_domain",
        )
    for i in range(DOMAIN_BURST):
        mailbox.wait_for_rcpt(f"user{i}@mx{i}.spamwave.example")
    # A different domain is mailed meanwhile.
    assert ask_from(synapse, "rotdother", "someone@calm.example", "10.200.0.1").status == 202
    assert request_outcome(synapse, "rotdother") == ("issued", None)
    mailbox.wait_for_rcpt("someone@calm.example")
