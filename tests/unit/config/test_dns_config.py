"""The DNS checks' config: defaults (off), valid forms, and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate import EmailGate
from synapse_email_gate.config.dns import DnsblConfig, DnsblZone, DnsConfig, MailDomainConfig
from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.rules.dns import ListingAnswers


def parse(raw: dict[str, Any]) -> GateConfig:
    return EmailGate.parse_config(raw)


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return str(info.value)


def test_off_by_default() -> None:
    config = parse({})
    assert config.dns == DnsConfig(servers=(), timeout_ms=1000)
    assert config.dnsbl == DnsblConfig()
    assert not config.dnsbl.enabled
    assert config.mail_domain_check == MailDomainConfig(enabled=False)


def test_full_config() -> None:
    config = parse(
        {
            "dns": {
                "servers": ["127.0.0.1:5353", "192.0.2.53", "[::1]:53", "::1"],
                "timeout": "500ms",
            },
            "dnsbl": {
                "zones": [
                    {"zone": "Zen.Example.org.", "action": "refuse"},
                    {"zone": "tor.example.org", "action": "challenge"},
                    {"zone": "bl.example.net", "action": "approval", "answers": ["127.0.0.2"]},
                    {"zone": "plain.example.net"},
                ],
                "cache_ttl": "2h",
                "negative_cache_ttl": "1m",
            },
            "mail_domain_check": {
                "enabled": True,
                "throwaway_mx": ["MX.Throwaway.example."],
                "cache_ttl": "10m",
            },
        }
    )
    assert config.dns.servers == (("127.0.0.1", 5353), ("192.0.2.53", 53), ("::1", 53), ("::1", 53))
    assert config.dns.timeout_ms == 500
    assert config.dnsbl.zones == (
        DnsblZone("zen.example.org", "refuse"),
        DnsblZone("tor.example.org", "challenge"),
        DnsblZone("bl.example.net", "approval", ListingAnswers.parse(["127.0.0.2"])),
        DnsblZone("plain.example.net", "refuse"),
    )
    assert config.dnsbl.uses("challenge") and not DnsblConfig().uses("challenge")
    assert (config.dnsbl.cache_ttl_ms, config.dnsbl.negative_cache_ttl_ms) == (7_200_000, 60_000)
    assert config.mail_domain_check == MailDomainConfig(True, ("mx.throwaway.example",), 600_000)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dns": {"servers": ["dns.example:53"]}},
            "dns.servers: 'dns.example:53': expected an IP address",
        ),
        (
            {"dns": {"servers": ["127.0.0.1:x"]}},
            "dns.servers: '127.0.0.1:x': expected address:port",
        ),
        ({"dns": {"servers": ["127.0.0.1:70000"]}}, "dns.servers: '127.0.0.1:70000': port must be"),
        ({"dns": {"servers": "127.0.0.1"}}, "dns.servers: expected a list of strings"),
        ({"dns": {"timeout": "10ms"}}, "dns.timeout: must be at least 50ms"),
        ({"dns": {"timeout": "1m"}}, "dns.timeout: must be at most 30s"),
        ({"dns": {"port": 53}}, "dns.port: unknown key"),
        ({"dnsbl": {"zones": "zen.example.org"}}, "dnsbl.zones: expected a list"),
        ({"dnsbl": {"zones": ["zen.example.org"]}}, "dnsbl.zones.0: expected a mapping"),
        ({"dnsbl": {"zones": [{"action": "refuse"}]}}, "dnsbl.zones.0.zone: must not be empty"),
        (
            {"dnsbl": {"zones": [{"zone": "a b.example"}]}},
            "dnsbl.zones.0.zone: 'a b.example' has characters",
        ),
        (
            {"dnsbl": {"zones": [{"zone": "zen.example.org", "action": "block"}]}},
            "dnsbl.zones.0.action: must be one of refuse, approval, challenge; got 'block'",
        ),
        (
            {"dnsbl": {"zones": [{"zone": "a.example"}, {"zone": "A.example."}]}},
            "dnsbl.zones.1.zone: 'a.example' is listed twice",
        ),
        (
            {"dnsbl": {"zones": [{"zone": "a.example", "answers": ["::1"]}]}},
            "dnsbl.zones.0.answers: '::1' is not an IPv4 address or range",
        ),
        (
            {"dnsbl": {"zones": [{"zone": "a.example", "acton": "refuse"}]}},
            "dnsbl.zones.0.acton: unknown key",
        ),
        ({"dnsbl": {"cache_ttl": "soon"}}, "dnsbl.cache_ttl: expected a duration"),
        (
            {"mail_domain_check": {"enabled": "yes"}},
            "mail_domain_check.enabled: expected true or false",
        ),
        (
            {"mail_domain_check": {"throwaway_mx": ["bad host"]}},
            "mail_domain_check.throwaway_mx: 'bad host'",
        ),
    ],
)
def test_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    assert message in error(raw)
