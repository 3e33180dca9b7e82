"""The DNS checks' memory: the answer cache and the failure log, with a clock of our own."""

from __future__ import annotations

import logging

import pytest

from synapse_email_gate.requests import dns_checks
from synapse_email_gate.requests.dns_checks import FailureLog, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lives_for_its_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, bool] = TtlCache(clock)
    cache.put("listed", True, 60_000)
    cache.put("clean", False, 5_000)
    assert cache.get("listed") is True
    assert cache.get("clean") is False
    clock.now += 5
    assert cache.get("clean") is None
    assert cache.get("listed") is True
    clock.now += 55
    assert cache.get("listed") is None


def test_a_ttl_of_zero_remembers_nothing() -> None:
    cache: TtlCache[str, bool] = TtlCache(Clock())
    cache.put("x", True, 0)
    assert cache.get("x") is None


def test_a_full_cache_drops_expired_answers_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_checks, "_MAX_CACHED", 3)
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(clock)
    cache.put("old", 1, 1_000)
    cache.put("a", 2, 60_000)
    cache.put("b", 3, 60_000)
    clock.now += 2
    cache.put("c", 4, 60_000)  # full: "old" has expired and makes room
    assert [cache.get(k) for k in ("a", "b", "c")] == [2, 3, 4]
    cache.put("d", 5, 60_000)  # full of live answers: all are dropped
    assert [cache.get(k) for k in ("a", "b", "c", "d")] == [None, None, None, 5]


def test_failures_are_logged_at_most_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = FailureLog("dnsbl", clock)
    with caplog.at_level(logging.WARNING, logger=dns_checks.__name__):
        for _ in range(10):
            log.failed("zen.example.org", "timeout")
            clock.now += 0.05
        assert len(caplog.records) == 1
        clock.now += 1
        log.failed("zen.example.org", "servfail")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "dnsbl: DNS timeout asking zen.example.org; the request is let through (fail open)",
        "dnsbl: DNS servfail asking zen.example.org; the request is let through (fail open)"
        " (and 9 more since the last such line)",
    ]


def test_off_makes_no_resolver_and_no_checks() -> None:
    from twisted.internet import reactor

    from synapse_email_gate.config.gate import GateConfig

    assert dns_checks.dns_checks(GateConfig.parse({}), reactor, "test.local") == (None, None)
    only_mail = GateConfig.parse(
        {"mail_domain_check": {"enabled": True}, "dns": {"servers": ["127.0.0.1:5353"]}}
    )
    dnsbl, mail_domains = dns_checks.dns_checks(only_mail, reactor, "test.local")
    assert dnsbl is None
    assert isinstance(mail_domains, dns_checks.MailDomains)
