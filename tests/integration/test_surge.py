"""The surge switch against a real Synapse, on SQLite and PostgreSQL: a wave from
many client addresses of one /24 switches the harder challenge on by itself, the
moderation room is told, and the mode switches back once the rate falls; moderators
switch it by hand through the admin API, the CLI and the room (approval mode
included). Clients speak through X-Forwarded-For from the trusted proxy 127.0.0.1.

The tests of this module share one server and run in order: the automatic wave
comes first, while nothing else has been asked.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from synapse_email_gate.rules import proof_of_work
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from, request_outcome, scrape, surge, value
from tests.integration.matrix import MatrixUser, wait_for_bot_line, wait_until
from tests.integration.test_cli import as_json, cli, ok

BASE_DIFFICULTY = 6
SURGE_LEVEL = 10
WAVE = 8  # per_network_threshold
WAVE_NETWORK = "198.51.100.0/24"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "moderators": ["@mod:test.local"],
        "moderation_room": "#moderation:test.local",
        # Surge switches are mailed to these whatever `events` selects.
        "notifications": {"emails": ["mods@surge.example"], "events": [], "check_interval": "1s"},
        "email_cooldown": "1s",
        "challenge": {"difficulty": BASE_DIFFICULTY, "lifetime": "2m"},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "surge": {
            "enabled": True,
            "window": "10s",
            "threshold": 0,
            "per_domain_threshold": 0,
            "per_network_threshold": WAVE,
            "mode": "challenge",
            "challenge_level": SURGE_LEVEL,
            "hold": "2s",
            "check_interval": "1s",
        },
    }


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "mod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: MatrixUser) -> str:
    room_id = mod.open_moderation_room()
    return room_id


def switch(synapse: SynapseServer, token: str, body: dict[str, Any]) -> http.Response:
    return http.post(
        synapse.gate_url + "admin/surge",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def audit_actions(synapse: SynapseServer, token: str) -> list[tuple[str, str]]:
    answer = http.get(
        synapse.gate_url + "admin/audit?limit=100", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, answer
    return [(e["action"], e["actor"]) for e in answer.json()["entries"]]


def ask(synapse: SynapseServer, username: str, ip: str, **extra: Any) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": f"{username}@calm.example", **extra},
        headers={"X-Forwarded-For": ip},
    )


def solved(synapse: SynapseServer) -> dict[str, str]:
    got = http.get(synapse.gate_url + "api/challenge").json()
    return {
        "challenge": got["challenge"],
        "nonce": proof_of_work.solve(got["challenge"], got["difficulty"]),
    }


def test_a_wave_from_one_network_switches_on_the_harder_challenge_and_back(
    synapse: SynapseServer,
    admin_token: str,
    mod: MatrixUser,
    room: str,
    mailbox: SmtpCatcher,
) -> None:
    assert surge(synapse, admin_token)["on"] is False
    assert ask(synapse, "beforewave", "203.0.113.1").status == 202  # no challenge yet

    # Rotated addresses, one /24, a different domain each.
    for i in range(WAVE):
        answer = ask_from(synapse, f"wave{i}", f"wave{i}@w{i}.example", f"198.51.100.{i + 1}")
        assert answer.status == 202, answer

    state = wait_until(
        lambda: (s := surge(synapse, admin_token))["on"] and s, "the surge to switch on"
    )
    assert (state["mode"], state["cause"], state["scope"]) == (
        "challenge",
        "network",
        WAVE_NETWORK,
    )
    assert state["level"] == SURGE_LEVEL

    # The page and the API now demand the harder challenge, from everyone.
    assert http.get(synapse.gate_url + "api/challenge").json()["difficulty"] == SURGE_LEVEL
    assert "data-challenge=" in http.get(synapse.gate_url).text
    refused = ask(synapse, "duringwave", "203.0.113.2")
    assert refused.status == 400
    assert refused.json()["errcode"] == proof_of_work.REQUIRED
    accepted = ask(synapse, "duringwave", "203.0.113.2", **solved(synapse))
    assert accepted.status == 202, accepted
    assert request_outcome(synapse, "duringwave") == ("issued", None)

    # The moderators were told, in the room.
    line = wait_for_bot_line(mod, room, "Surge switch: ON")
    assert f"network {WAVE_NETWORK}" in line and f"{SURGE_LEVEL} bits" in line, line
    samples = scrape(synapse)
    assert value(samples, "synapse_email_gate_surge_on", mode="challenge") == 1
    assert (
        value(samples, "synapse_email_gate_surge_switches_total", direction="on", cause="network")
        == 1
    )
    assert ("surge.on", "surge (automatic)") in audit_actions(synapse, admin_token)

    # The wave is over: once its requests leave the window (and the hold has
    # passed), the mode switches back by itself.
    state = wait_until(
        lambda: (s := surge(synapse, admin_token))["on"] is False and s,
        "the surge to switch off",
        timeout=40,
    )
    assert state["cause"] == "calm"
    assert ask(synapse, "afterwave", "203.0.113.3").status == 202
    assert wait_for_bot_line(mod, room, re.escape("Surge switch: off (calm)"))
    assert ("surge.off", "surge (automatic)") in audit_actions(synapse, admin_token)
    samples = scrape(synapse)
    assert value(samples, "synapse_email_gate_surge_on", mode="challenge") == 0


def test_moderators_switch_approval_on_and_off_through_the_admin_api(
    synapse: SynapseServer, admin_token: str, mod: MatrixUser, room: str, mailbox: SmtpCatcher
) -> None:
    answer = switch(synapse, mod.access_token, {"on": True, "mode": "approval", "duration": "5m"})
    assert answer.status == 200, answer
    state = answer.json()
    assert (state["on"], state["mode"], state["cause"]) == (True, "approval", "manual")
    assert state["until_ts"] - state["since_ts"] == 300_000
    told = wait_for_bot_line(mod, room, re.escape("ON: approval required (manual)"))
    assert "by @mod:test.local" in told, told
    mailed = mailbox.wait_for(
        lambda m: "mods@surge.example" in m.rcpt_tos and "approval required (manual)" in m.text
    )
    assert "Surge switch" in mailed.subject, mailed.subject

    # New requests now wait for a moderator: the address is confirmed first.
    assert ask(synapse, "inapproval", "203.0.113.10").status == 202
    assert request_outcome(synapse, "inapproval") == ("verifying", None)
    mail = mailbox.wait_for_rcpt("inapproval@calm.example")
    assert "verify?code=" in mail.text

    answer = switch(synapse, mod.access_token, {"on": False})
    assert answer.status == 200 and answer.json()["on"] is False
    assert ask(synapse, "afterapproval", "203.0.113.11").status == 202
    assert request_outcome(synapse, "afterapproval") == ("issued", None)
    actions = audit_actions(synapse, admin_token)
    assert ("surge.on", "@mod:test.local") in actions
    assert ("surge.off", "@mod:test.local") in actions


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "on must be true or false"),
        ({"on": "yes"}, "on must be true or false"),
        ({"on": True, "mode": "lockdown"}, "mode must be one of"),
        ({"on": True, "duration": "forever"}, "duration"),
        ({"on": True, "duration": "30d"}, "at most 7d"),
        ({"on": False, "duration": {}}, "duration must be"),
        ({"on": False, "mode": None}, "mode must be one of"),
    ],
)
def test_bad_switches_are_refused_with_the_problem_named(
    synapse: SynapseServer, admin_token: str, body: dict[str, Any], words: str
) -> None:
    answer = switch(synapse, admin_token, body)
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "M_INVALID_PARAM"
    assert words in answer.json()["error"]
    assert surge(synapse, admin_token)["on"] is False


def test_only_moderators_see_or_switch_the_surge(synapse: SynapseServer) -> None:
    outsider = MatrixUser(synapse, "surgeoutsider")
    assert switch(synapse, outsider.access_token, {"on": True}).status == 403
    answer = http.get(
        synapse.gate_url + "admin/surge",
        headers={"Authorization": f"Bearer {outsider.access_token}"},
    )
    assert answer.status == 403
    assert http.get(synapse.gate_url + "admin/surge").status == 401


def test_the_room_command_switches_the_surge(
    synapse: SynapseServer, admin_token: str, mod: MatrixUser, room: str
) -> None:
    reply = mod.ask_bot(room, "!gate surge on challenge 10m")
    assert f"ON: challenge at {SURGE_LEVEL} bits (manual)" in reply, reply
    assert surge(synapse, admin_token)["mode"] == "challenge"
    assert "ON: challenge" in mod.ask_bot(room, "!gate surge")
    assert ask(synapse, "roomsurge", "203.0.113.20").status == 400  # the challenge is on
    assert "off" in mod.ask_bot(room, "!gate surge off")
    assert surge(synapse, admin_token)["on"] is False
    assert "Usage" in mod.ask_bot(room, "!gate surge sideways")


def test_the_cli_switches_the_surge(synapse: SynapseServer, admin_token: str) -> None:
    on = as_json(
        cli(
            synapse, admin_token, "--json", "surge", "on", "--mode", "approval", "--duration", "10m"
        )
    )
    assert (on["on"], on["mode"], on["cause"]) == (True, "approval", "manual")
    assert on["until_ts"] - on["since_ts"] == 600_000
    shown = ok(cli(synapse, admin_token, "surge", "status"))
    assert "ON: approval required" in shown and "manual" in shown, shown
    assert ask(synapse, "clisurge", "203.0.113.30").status == 202
    assert request_outcome(synapse, "clisurge") == ("verifying", None)
    assert "surge: off" in ok(cli(synapse, admin_token, "surge", "off"))
    assert surge(synapse, admin_token)["on"] is False


def test_a_wave_from_one_mail_domain_sends_requests_to_approval(
    make_synapse: Any, synapse_db: str, smtp: SmtpCatcher
) -> None:
    server = make_synapse(
        {
            "trusted_proxies": ["127.0.0.1"],
            "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
            "surge": {
                "enabled": True,
                "window": "10s",
                "threshold": 0,
                "per_domain_threshold": 5,
                "per_network_threshold": 0,
                "mode": "approval",
                "hold": "1m",
                "check_interval": "1s",
            },
        },
        db=synapse_db,
        metrics=True,
    )
    token = server.register_admin("ops", "ops-password-1")
    # Rotated mailboxes and subdomains of one domain, from addresses all over.
    for i in range(5):
        answer = ask_from(server, f"dwave{i}", f"u{i}@mx{i}.wave.example", f"10.{i}.1.1")
        assert answer.status == 202, answer
    state = wait_until(lambda: (s := surge(server, token))["on"] and s, "the surge to switch on")
    assert (state["mode"], state["cause"], state["scope"]) == ("approval", "domain", "wave.example")
    assert state["level"] is None
    # Every new request now waits for a moderator, whatever its domain.
    assert ask_from(server, "dlater", "someone@calm.example", "10.99.1.1").status == 202
    assert request_outcome(server, "dlater") == ("verifying", None)
    assert (
        value(
            scrape(server),
            "synapse_email_gate_surge_switches_total",
            direction="on",
            cause="domain",
        )
        == 1
    )
