"""The `surge` section and the per-domain / per-network rate limits, with their
defaults and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.policy_lists import Bucket, PolicyLists
from synapse_email_gate.config.reader import Section


def parse(raw: dict[str, Any]) -> GateConfig:
    return GateConfig.parse({"sender": "gate@example.org", **raw})


def test_surge_defaults_are_off_and_documented() -> None:
    surge = parse({}).surge
    assert not surge.enabled
    assert (surge.window_ms, surge.threshold, surge.per_domain_threshold) == (600_000, 300, 100)
    assert (surge.per_network_threshold, surge.release, surge.mode) == (60, 0.5, "challenge")
    assert surge.hold_ms == 1_800_000
    assert (surge.per_range_threshold, surge.range_ipv4_prefix, surge.range_ipv6_prefix) == (
        150,
        16,
        32,
    )
    assert surge.thresholds.per_range == 150
    assert surge.level(22) == 26 and surge.level(30) == 32


def test_surge_keys_parse() -> None:
    surge = parse(
        {
            "surge": {
                "enabled": True,
                "window": "1m",
                "threshold": 0,
                "per_domain_threshold": 5,
                "per_network_threshold": 0,
                "mode": "approval",
                "challenge_level": 12,
                "hold": "30s",
                "release": 0.25,
                "check_interval": "2s",
                "per_range_threshold": 9,
                "range_ipv4_prefix": 12,
                "range_ipv6_prefix": 40,
            }
        }
    ).surge
    assert (surge.thresholds.per_range, surge.range_ipv4_prefix, surge.range_ipv6_prefix) == (
        9,
        12,
        40,
    )
    assert (surge.window_ms, surge.per_domain_threshold, surge.mode) == (60_000, 5, "approval")
    assert (surge.level(22), surge.hold_ms, surge.release, surge.check_interval_ms) == (
        12,
        30_000,
        0.25,
        2_000,
    )


@pytest.mark.parametrize(
    ("surge", "key", "words"),
    [
        ({"mode": "lockdown"}, "surge.mode", "one of"),
        ({"challenge_level": 40}, "surge.challenge_level", "between 1 and 32"),
        ({"release": 0}, "surge.release", "above 0"),
        ({"threshold": -1}, "surge.threshold", "at least 0"),
        ({"window": "1s"}, "surge.window", "at least"),
        ({"per_range_threshold": -3}, "surge.per_range_threshold", "at least 0"),
        ({"per_range_threshold": "many"}, "surge.per_range_threshold", "integer"),
        ({"range_ipv4_prefix": 33}, "surge.range_ipv4_prefix", "at most 32"),
        ({"range_ipv4_prefix": 4}, "surge.range_ipv4_prefix", "at least 8"),
        ({"range_ipv6_prefix": 129}, "surge.range_ipv6_prefix", "at most 128"),
        ({"range_ipv6_prefix": 8}, "surge.range_ipv6_prefix", "at least 16"),
        (
            {
                "enabled": True,
                "threshold": 0,
                "per_domain_threshold": 0,
                "per_network_threshold": 0,
                "per_range_threshold": 0,
            },
            "surge.enabled",
            "threshold",
        ),
        ({"trheshold": 5}, "surge.trheshold", "unknown key"),
    ],
)
def test_bad_surge_values_name_the_key(surge: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse({"surge": surge})
    assert key in str(e.value) and words in str(e.value)


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"surge": {"range_ipv4_prefix": 25}}, "surge.range_ipv4_prefix", "at most"),
        ({"surge": {"range_ipv6_prefix": 56}}, "surge.range_ipv6_prefix", "(48)"),
        (
            {"surge": {"range_ipv4_prefix": 20}, "rate_limits": {"ipv4_network_prefix": 16}},
            "surge.range_ipv4_prefix",
            "rate_limits.ipv4_network_prefix (16)",
        ),
    ],
)
def test_a_range_narrower_than_a_network_is_refused_naming_both_keys(
    raw: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse(raw)
    assert key in str(e.value) and words in str(e.value)


def test_a_range_as_wide_as_a_network_or_wider_is_accepted() -> None:
    same = parse({"surge": {"range_ipv4_prefix": 24, "range_ipv6_prefix": 48}}).surge
    assert (same.range_ipv4_prefix, same.range_ipv6_prefix) == (24, 48)
    wide = parse(
        {"surge": {"range_ipv4_prefix": 20}, "rate_limits": {"ipv4_network_prefix": 28}}
    ).surge
    assert wide.range_ipv4_prefix == 20
    # A default range follows a network wider than it, rather than refusing a
    # key nobody wrote.
    follows = parse({"rate_limits": {"ipv4_network_prefix": 12, "ipv6_network_prefix": 24}})
    assert (follows.surge.range_ipv4_prefix, follows.surge.range_ipv6_prefix) == (12, 24)


def limits(raw: dict[str, Any]) -> Any:
    lists = PolicyLists.from_section(Section({"rate_limits": raw}, ""))
    assert lists.rate_limits is not None
    return lists.rate_limits


def test_domain_and_network_limits_follow_global_and_per_ip_unless_set() -> None:
    default = parse({}).policy.rate_limits
    assert default is None  # nothing written: RateLimits() defaults apply
    derived = limits({"per_ip": {"burst": 30, "per_second": 0.01}, "global": {"burst": 400}})
    assert derived.network_limit == Bucket(300, 0.1)
    assert derived.email_domain_limit == Bucket(200, 0.25)
    # Never below 50 at once and 50 an hour.
    small = limits({"per_ip": {"burst": 1, "per_second": 0}, "global": {"burst": 4}})
    assert small.network_limit == Bucket(50, 50 / 3600)
    assert small.email_domain_limit == Bucket(50, 0.25)
    assert (derived.ipv4_network_prefix, derived.ipv6_network_prefix) == (24, 48)
    given = limits(
        {
            "per_network": {"burst": 7},
            "per_email_domain": {"burst": 2, "per_second": 0.5},
            "ipv4_network_prefix": 16,
            "ipv6_network_prefix": 56,
        }
    )
    assert given.network_limit.burst == 7
    assert given.email_domain_limit == Bucket(2, 0.5)
    assert (given.ipv4_network_prefix, given.ipv6_network_prefix) == (16, 56)


def test_a_policy_file_layer_changes_only_what_it_writes() -> None:
    base = limits({"per_network": {"burst": 7, "per_second": 1.0}})
    layer = limits({"per_network": {"burst": 9}, "ipv4_network_prefix": 20})
    merged = layer.over(base)
    assert merged.network_limit == Bucket(9, 1.0)
    assert merged.ipv4_network_prefix == 20
    # A layer changing per_ip moves a derived network limit with it.
    follows = limits({"per_ip": {"burst": 8}}).over(limits({}))
    assert follows.network_limit.burst == 80


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"ipv4_network_prefix": 33}, "rate_limits.ipv4_network_prefix"),
        ({"ipv6_network_prefix": 8}, "rate_limits.ipv6_network_prefix"),
        ({"per_network": {"burst": 0}}, "rate_limits.per_network.burst"),
        ({"per_email_domain": {"rate": 1}}, "rate_limits.per_email_domain.rate"),
    ],
)
def test_bad_limit_values_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        limits(raw)
    assert key in str(e.value)
