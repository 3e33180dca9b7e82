"""The pure parts of the DNS checks: reverse names, listing answers, MX verdicts."""

from __future__ import annotations

import pytest

from synapse_email_gate.rules.dns import (
    NO_MAIL_HOST,
    NULL_MX,
    THROWAWAY_MX,
    HostSuffixes,
    ListingAnswers,
    MxRecord,
    mail_domain_problem,
    reverse_address,
    strictest,
    zone_problem,
)


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("203.0.113.7", "7.113.0.203.zen.example.org"),
        ("127.0.0.2", "2.0.0.127.zen.example.org"),
        ("::ffff:203.0.113.7", "7.113.0.203.zen.example.org"),
        (
            "2001:db8::1",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example.org",
        ),
        (
            "2001:DB8:1234:5678:9abc:def0:1:2",
            "2.0.0.0.1.0.0.0.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.8.b.d.0.1.0.0.2.zen.example.org",
        ),
    ],
)
def test_reverse_name(ip: str, name: str) -> None:
    assert f"{reverse_address(ip)}.zen.example.org" == name


def test_reverse_name_of_no_address() -> None:
    assert reverse_address("not-an-ip") is None


def test_ipv6_reverse_name_has_32_nibbles() -> None:
    name = reverse_address("2001:db8::")
    assert name is not None
    assert len(name.split(".")) == 32


@pytest.mark.parametrize(
    ("answers", "listed"),
    [
        ([], False),
        (["127.0.0.2"], True),
        (["127.0.0.10", "127.0.0.4"], True),
        (["127.255.255.254"], False),  # an error code ("public resolver"), not a listing
        (["10.0.0.1"], False),  # outside 127.0.0.0/8: never a listing
        (["garbage"], False),
    ],
)
def test_default_listing_answers(answers: list[str], listed: bool) -> None:
    assert ListingAnswers().lists(answers) is listed


def test_configured_listing_answers() -> None:
    only = ListingAnswers.parse(["127.0.0.2", "127.0.0.8/30"])
    assert only.lists(["127.0.0.2"])
    assert only.lists(["127.0.0.11"])
    assert not only.lists(["127.0.0.3"])
    assert not only.lists(["127.0.0.12"])


@pytest.mark.parametrize("entry", ["2001:db8::1", "nonsense", "127.0.0.0/33"])
def test_listing_answers_refuse_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="IPv4 address or range"):
        ListingAnswers.parse([entry])


def test_strictest_action() -> None:
    assert strictest([]) is None
    assert strictest(["challenge"]) == "challenge"
    assert strictest(["challenge", "approval"]) == "approval"
    assert strictest(["challenge", "refuse", "approval"]) == "refuse"


@pytest.mark.parametrize(
    ("zone", "problem"),
    [
        ("zen.example.org", None),
        ("dnsbl_1.example", None),
        ("", "must not be empty"),
        ("a..b", "empty or too long label"),
        ("a b.example", "characters other than"),
        ("x" * 64 + ".example", "empty or too long label"),
    ],
)
def test_zone_problem(zone: str, problem: str | None) -> None:
    found = zone_problem(zone)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


THROWAWAY = HostSuffixes(["mx.throwaway.example", "Trash.Example."])


@pytest.mark.parametrize(
    ("mx", "has_address", "problem"),
    [
        ([MxRecord(10, "mx.example.org")], False, None),
        ([], True, None),  # no MX, but an A/AAAA: mail goes there (RFC 5321 5.1)
        ([], False, NO_MAIL_HOST),
        ([MxRecord(0, "")], False, NULL_MX),
        ([MxRecord(0, ""), MxRecord(10, "mx.example.org")], True, NULL_MX),
        ([MxRecord(10, "mx.throwaway.example")], False, THROWAWAY_MX),
        ([MxRecord(10, "eu.mx.throwaway.example")], False, THROWAWAY_MX),
        ([MxRecord(5, "mx.example.org"), MxRecord(10, "in.trash.example")], False, THROWAWAY_MX),
        ([MxRecord(10, "notmx.throwaway.example")], False, None),
        ([MxRecord(10, "throwaway.example")], False, None),
    ],
)
def test_mail_domain_problem(mx: list[MxRecord], has_address: bool, problem: str | None) -> None:
    assert mail_domain_problem(mx, has_address, THROWAWAY) == problem


def test_no_throwaway_list_matches_nothing() -> None:
    assert not HostSuffixes([])
    assert (
        mail_domain_problem([MxRecord(1, "mx.anything.example")], False, HostSuffixes([])) is None
    )
