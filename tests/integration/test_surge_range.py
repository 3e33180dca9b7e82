"""The surge switch's range count against a real Synapse, on SQLite and PostgreSQL:
a wave spread over several /24s (or /48s) of one wider range, none of them passing
`per_network_threshold`, switches the surge on with cause `range` and the range as
its scope; the API, the audit log, the metrics, the mail to the moderators and the
CLI all name it. Clients speak through X-Forwarded-For from the trusted proxy.

The tests share one server and run in order: each wave waits for the switch to
go off again after it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from, scrape, surge, value
from tests.integration.matrix import wait_until
from tests.integration.test_cli import cli, ok

PER_NETWORK = 5
PER_RANGE = 6
MODS = "mods@range.example"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "notifications": {"emails": [MODS], "events": [], "check_interval": "1s"},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "surge": {
            "enabled": True,
            "window": "10s",
            "threshold": 0,
            "per_domain_threshold": 0,
            "per_network_threshold": PER_NETWORK,
            "per_range_threshold": PER_RANGE,
            # IPv4: the default /16. IPv6: a /40, wider than the /48 networks.
            "range_ipv6_prefix": 40,
            "mode": "approval",
            "hold": "2s",
            "check_interval": "1s",
        },
    }


def surge_audit(synapse: SynapseServer, token: str) -> list[dict[str, Any]]:
    answer = http.get(
        synapse.gate_url + "admin/audit?limit=100", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, answer
    return [e for e in answer.json()["entries"] if e["action"] == "surge.on"]


def wave(synapse: SynapseServer, name: str, ips: list[str]) -> None:
    for i, ip in enumerate(ips):
        answer = ask_from(synapse, f"{name}{i}", f"{name}{i}@{name}{i}.example", ip)
        assert answer.status == 202, answer


def switched_off(synapse: SynapseServer, token: str) -> None:
    wait_until(lambda: surge(synapse, token)["on"] is False, "the surge to switch off", timeout=40)


def test_a_wave_over_several_24s_of_one_16_switches_on_with_cause_range(
    synapse: SynapseServer, admin_token: str, mailbox: SmtpCatcher
) -> None:
    assert surge(synapse, admin_token)["on"] is False
    assert surge(synapse, admin_token)["config"]["per_range_threshold"] == PER_RANGE
    # Six requests, two from each of three /24s inside 172.20.0.0/16: no /24
    # comes near its threshold of five, the /16 reaches six.
    ips = [f"172.20.{network}.{host}" for network in (3, 40, 200) for host in (1, 2)]
    wave(synapse, "spread", ips)

    state = wait_until(
        lambda: (s := surge(synapse, admin_token))["on"] and s, "the surge to switch on"
    )
    assert (state["mode"], state["cause"], state["scope"]) == ("approval", "range", "172.20.0.0/16")
    [entry] = surge_audit(synapse, admin_token)
    assert entry["actor"] == "surge (automatic)" and entry["target"] == "172.20.0.0/16"
    assert "busiest range 172.20.0.0/16: 6" in entry["detail"], entry
    assert ": 2;" in entry["detail"].split("busiest network", 1)[1], entry  # no /24 above 2
    assert (
        value(
            scrape(synapse),
            "synapse_email_gate_surge_switches_total",
            direction="on",
            cause="range",
        )
        == 1
    )
    mailed = mailbox.wait_for(
        lambda m: MODS in m.rcpt_tos and "approval required (range 172.20.0.0/16)" in m.text
    )
    assert "Surge switch" in mailed.subject, mailed.subject
    shown = ok(cli(synapse, admin_token, "surge", "status"))
    assert "range 172.20.0.0/16" in shown, shown

    switched_off(synapse, admin_token)


def test_an_ipv6_wave_over_several_48s_of_the_configured_range_switches_on(
    synapse: SynapseServer, admin_token: str
) -> None:
    # 2001:db8:1000::/48 .. 2001:db8:1005::/48: six networks, one /40.
    wave(synapse, "six", [f"2001:db8:{0x1000 + i:x}::1" for i in range(PER_RANGE)])
    state = wait_until(
        lambda: (s := surge(synapse, admin_token))["on"] and s, "the surge to switch on"
    )
    assert (state["cause"], state["scope"]) == ("range", "2001:db8:1000::/40")
    switched_off(synapse, admin_token)


def test_a_wave_inside_one_24_is_named_by_its_network_not_its_range(
    synapse: SynapseServer, admin_token: str
) -> None:
    wave(synapse, "narrow", [f"172.21.9.{host}" for host in range(1, PER_RANGE + 1)])
    state = wait_until(
        lambda: (s := surge(synapse, admin_token))["on"] and s, "the surge to switch on"
    )
    assert (state["cause"], state["scope"]) == ("network", "172.21.9.0/24")
    switched_off(synapse, admin_token)
