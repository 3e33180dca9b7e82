import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_email_gate.rules.ips import IpRuleError, IpRules, _canonical, client_ip, parse_ip

# --- IpRules -----------------------------------------------------------------


def test_single_ipv4_address_matches_itself_only() -> None:
    rules = IpRules.compile(["203.0.113.7"])
    assert rules.first_match("203.0.113.7") == "203.0.113.7"
    assert rules.first_match("203.0.113.8") is None


def test_ipv4_network_matches_its_range() -> None:
    rules = IpRules.compile(["198.51.100.0/24"])
    assert rules.first_match("198.51.100.0") == "198.51.100.0/24"
    assert rules.first_match("198.51.100.255") == "198.51.100.0/24"
    assert rules.first_match("198.51.101.0") is None


def test_ipv6_network_matches_its_range() -> None:
    rules = IpRules.compile(["2001:db8::/32"])
    assert rules.first_match("2001:db8:ffff::1") == "2001:db8::/32"
    assert rules.first_match("2001:db9::1") is None


def test_single_ipv6_address_matches_any_spelling() -> None:
    rules = IpRules.compile(["2001:DB8:0:0::1"])
    assert rules.first_match("2001:db8::1") == "2001:DB8:0:0::1"


def test_network_with_host_bits_is_normalised() -> None:
    rules = IpRules.compile(["198.51.100.77/24"])
    assert rules.first_match("198.51.100.1") == "198.51.100.77/24"


def test_ipv4_mapped_client_matches_ipv4_entry() -> None:
    rules = IpRules.compile(["203.0.113.0/24"])
    assert rules.first_match("::ffff:203.0.113.9") == "203.0.113.0/24"


def test_ipv4_mapped_entry_matches_ipv4_client() -> None:
    rules = IpRules.compile(["::ffff:203.0.113.0/120"])
    assert rules.first_match("203.0.113.9") == "::ffff:203.0.113.0/120"
    assert rules.first_match("203.0.114.9") is None


def test_ipv6_range_containing_mapped_space_covers_ipv4() -> None:
    rules = IpRules.compile(["::/0"])
    assert rules.first_match("192.0.2.1") == "::/0"
    assert rules.first_match("2001:db8::1") == "::/0"


def test_ipv4_entry_does_not_match_unrelated_ipv6() -> None:
    rules = IpRules.compile(["0.0.0.0/0"])
    assert rules.first_match("2001:db8::1") is None


def test_most_specific_entry_is_reported() -> None:
    rules = IpRules.compile(["10.0.0.0/8", "10.1.2.3", "10.1.0.0/16"])
    assert rules.first_match("10.1.2.3") == "10.1.2.3"
    assert rules.first_match("10.1.9.9") == "10.1.0.0/16"
    assert rules.first_match("10.9.9.9") == "10.0.0.0/8"


def test_not_an_ip_matches_nothing() -> None:
    rules = IpRules.compile(["0.0.0.0/0", "::/0"])
    assert rules.first_match("not-an-ip") is None
    assert rules.first_match("") is None


def test_matches_is_first_match_as_bool() -> None:
    rules = IpRules.compile(["192.0.2.1"])
    assert rules.matches("192.0.2.1")
    assert not rules.matches("192.0.2.2")


def test_empty_rules_match_nothing() -> None:
    assert IpRules.compile([]).first_match("192.0.2.1") is None
    assert IpRules.empty().first_match("::1") is None
    assert len(IpRules.empty()) == 0


def test_entries_are_kept() -> None:
    assert IpRules.compile(["192.0.2.1", "::1"]).entries == ("192.0.2.1", "::1")


@pytest.mark.parametrize(
    "bad", ["", "banana", "300.1.1.1", "1.2.3.4/33", "2001:db8::/129", "1.2.3", "01.2.3.4"]
)
def test_bad_entries_are_refused_naming_the_entry(bad: str) -> None:
    with pytest.raises(IpRuleError) as info:
        IpRules.compile(["192.0.2.1", bad])
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_ten_thousand_networks_agree_with_naive_scan() -> None:
    rng = random.Random(10_000)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(5_000):
        length = rng.randint(8, 32)
        networks.append(ipaddress.IPv4Network((rng.getrandbits(32), length), strict=False))
    for _ in range(5_000):
        length = rng.randint(16, 128)
        networks.append(ipaddress.IPv6Network((rng.getrandbits(128), length), strict=False))
    rules = IpRules.compile([str(n) for n in networks])
    probes = [str(n.network_address + 1) for n in rng.sample(networks, 100)]
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100)]
    for probe in probes:
        address = ipaddress.ip_address(probe)
        covering = [n for n in networks if address in n]
        expected = str(max(covering, key=lambda n: n.prefixlen)) if covering else None
        assert rules.first_match(probe) == expected, probe


def test_parse_ip_unmaps_ipv4_mapped_addresses() -> None:
    assert parse_ip("::ffff:1.2.3.4") == ipaddress.IPv4Address("1.2.3.4")
    assert parse_ip(" 2001:db8::1 ") == ipaddress.IPv6Address("2001:db8::1")
    assert parse_ip("nope") is None


# --- client_ip ---------------------------------------------------------------

_PROXY = IpRules.compile(["10.0.0.1", "fd00::/8"])


def test_untrusted_peer_is_the_client_and_header_is_ignored() -> None:
    assert client_ip("203.0.113.5", ["198.51.100.1"], _PROXY) == "203.0.113.5"


def test_no_trusted_proxies_ignores_header() -> None:
    assert client_ip("10.0.0.1", ["198.51.100.1"], IpRules.empty()) == "10.0.0.1"


def test_trusted_peer_uses_rightmost_forwarded_address() -> None:
    assert client_ip("10.0.0.1", ["198.51.100.1"], _PROXY) == "198.51.100.1"


def test_spoofed_left_entries_are_ignored() -> None:
    header = "1.1.1.1, 2.2.2.2, 198.51.100.1"
    assert client_ip("10.0.0.1", [header], _PROXY) == "198.51.100.1"


def test_trusted_hops_are_skipped_from_the_right() -> None:
    header = "1.1.1.1, 198.51.100.1, fd00::2, 10.0.0.1"
    assert client_ip("10.0.0.1", [header], _PROXY) == "198.51.100.1"


def test_several_header_instances_are_joined_in_order() -> None:
    headers = ["1.1.1.1, 198.51.100.1", "fd00::2"]
    assert client_ip("10.0.0.1", headers, _PROXY) == "198.51.100.1"


def test_all_hops_trusted_gives_leftmost_hop() -> None:
    assert client_ip("10.0.0.1", ["fd00::3, fd00::2"], _PROXY) == "fd00::3"


def test_no_header_from_trusted_peer_gives_peer() -> None:
    assert client_ip("10.0.0.1", [], _PROXY) == "10.0.0.1"


def test_garbage_hop_stops_walk_at_last_good_address() -> None:
    assert client_ip("10.0.0.1", ["1.1.1.1, unknown, fd00::2"], _PROXY) == "fd00::2"


def test_garbage_rightmost_hop_gives_peer() -> None:
    assert client_ip("10.0.0.1", ["1.1.1.1, <script>"], _PROXY) == "10.0.0.1"


def test_empty_items_are_skipped() -> None:
    assert client_ip("10.0.0.1", ["198.51.100.1, ,", ""], _PROXY) == "198.51.100.1"


def test_ports_and_whitespace_are_stripped() -> None:
    assert client_ip("10.0.0.1", [" 198.51.100.1:5678 "], _PROXY) == "198.51.100.1"
    assert client_ip("10.0.0.1", ["[2001:db8::1]:443"], _PROXY) == "2001:db8::1"
    assert client_ip("10.0.0.1", ["[2001:db8::1]"], _PROXY) == "2001:db8::1"


def test_mapped_peer_is_unmapped_and_trusted_as_ipv4() -> None:
    assert client_ip("::ffff:10.0.0.1", ["198.51.100.1"], _PROXY) == "198.51.100.1"
    assert client_ip("::ffff:203.0.113.5", [], _PROXY) == "203.0.113.5"


def test_mapped_forwarded_address_is_unmapped() -> None:
    assert client_ip("10.0.0.1", ["::ffff:198.51.100.1"], _PROXY) == "198.51.100.1"


def test_ipv6_result_is_in_canonical_form() -> None:
    assert client_ip("10.0.0.1", ["2001:DB8:0::1"], _PROXY) == "2001:db8::1"


def test_non_ip_peer_is_returned_unchanged() -> None:
    assert client_ip("unix-socket", ["198.51.100.1"], _PROXY) == "unix-socket"


@given(st.text(max_size=50), st.lists(st.text(max_size=80), max_size=4))
def test_client_ip_never_raises_on_arbitrary_input(peer: str, headers: list[str]) -> None:
    result = client_ip(peer, headers, _PROXY)
    assert result == peer or parse_ip(result) is not None


_HOP = st.one_of(
    st.sampled_from(["10.0.0.1", "fd00::9", "198.51.100.1", "[fd00::1]:80", "1.2.3.4:99"]),
    st.text(st.sampled_from(list("0123456789abcdef:.[], %")), max_size=20),
)


@given(st.lists(_HOP, max_size=6))
def test_client_ip_from_trusted_peer_is_an_address_from_the_request(hops: list[str]) -> None:
    result = client_ip("10.0.0.1", [", ".join(hops)], _PROXY)
    assert parse_ip(result) is not None


# --- the plain IPv4 reading agrees with ipaddress --------------------------------


def _by_ipaddress(text: str) -> tuple[str, int, int] | None:
    address = parse_ip(text)
    return None if address is None else (str(address), address.version, int(address))


@pytest.mark.parametrize(
    "text",
    [
        "198.51.100.7",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",  # ipaddress refuses leading zeros
        "1.2.3",
        "1.2.3.4.5",
        "1..3.4",
        " 1.2.3.4 ",
        "1.2.3.4\n",
        "+1.2.3.4",
        "1.2.3.-4",
        "1.2.3.\u0664",  # an Arabic-Indic digit: str.isdigit says yes, ipaddress no
        "1.2.3.\u00b2",
        "::ffff:1.2.3.4",
        "2001:db8::1",
        "",
    ],
)
def test_the_plain_reading_of_an_address_agrees_with_ipaddress(text: str) -> None:
    assert _canonical(text) == _by_ipaddress(text)


@given(st.text(alphabet="0123456789.: abf+-\u0664", max_size=20))
def test_the_plain_reading_agrees_with_ipaddress_on_any_text(text: str) -> None:
    assert _canonical(text) == _by_ipaddress(text)


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_is_read_plainly(address: ipaddress.IPv4Address) -> None:
    assert _canonical(str(address)) == (str(address), 4, int(address))
