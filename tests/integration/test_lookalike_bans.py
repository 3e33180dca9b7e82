"""Look-alike usernames against a real Synapse, on SQLite and PostgreSQL: `r00t` is
refused by `^root$` when asked for and when registered with any other token; the
policy file can turn the folding off; and a listener with `x_forwarded: true` is
warned about at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, register, registered, reload_policy


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    path = tmp_path_factory.mktemp(f"lookalikes-{synapse_db}") / "policy.yaml"
    path.write_text("banned_usernames: []\n")
    return path


@pytest.fixture(scope="module")
def gate_config(policy_file: Path) -> dict[str, Any]:
    return {
        "banned_usernames": ["^root$", "admin"],
        "policy_file": str(policy_file),
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture
def default_policy(synapse: SynapseServer, policy_file: Path, admin_token: str) -> Iterator[None]:
    yield
    write_policy(policy_file, "banned_usernames: []\n")
    assert reload_policy(synapse, admin_token).status == 200


def write_policy(path: Path, text: str) -> None:
    """At once (write aside, rename): the periodic check must not read half a file."""
    aside = path.with_name(path.name + ".new")
    aside.write_text(text)
    os.replace(aside, path)


def invite(synapse: SynapseServer, admin_token: str) -> str:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    token: str = made.json()["token"]
    return token


def account_exists(synapse: SynapseServer, localpart: str) -> bool:
    rows = synapse.query("SELECT name FROM users WHERE name = ?", (synapse.user_id(localpart),))
    return bool(rows)


@pytest.mark.parametrize("name", ["r00t", "R00T", "ro0t", "@r00t:test.local", "adm1n", "4dmin"])
def test_a_lookalike_of_a_literal_ban_is_refused_when_asked_for(
    synapse: SynapseServer, name: str
) -> None:
    answer = ask(synapse, name, "lookalike@example.org")
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
    assert synapse.query("SELECT COUNT(*) FROM email_gate_requests")[0][0] == 0


def test_ordinary_names_near_the_bans_are_still_accepted(synapse: SynapseServer) -> None:
    for n, name in enumerate(["rooted", "gr00t", "r00ty", "robot", "madmax"]):
        answer = ask(synapse, name, f"ordinary{n}@example.org")
        assert answer.status == 202, (name, answer)


def test_a_lookalike_cannot_register_with_another_token(
    synapse: SynapseServer, admin_token: str
) -> None:
    refused = register(synapse, "r00t", invite(synapse, admin_token))
    assert not registered(refused), refused
    assert not account_exists(synapse, "r00t")
    # The same kind of token makes an account under a name no ban looks like.
    made = register(synapse, "r00tless", invite(synapse, admin_token))
    assert registered(made), made
    assert account_exists(synapse, "r00tless")


def test_the_policy_file_can_turn_the_folding_off(
    synapse: SynapseServer, policy_file: Path, admin_token: str, default_policy: None
) -> None:
    write_policy(policy_file, "banned_usernames: []\nbanned_usernames_lookalikes: off\n")
    reloaded = reload_policy(synapse, admin_token)
    assert reloaded.status == 200, reloaded
    assert ask(synapse, "r00t", "r00t@example.org").status == 202
    assert ask(synapse, "root", "root@example.org").json()["errcode"] == (
        "EMAIL_GATE_USERNAME_BANNED"
    )
    write_policy(policy_file, "banned_usernames_lookalikes: sometimes\n")
    refused = reload_policy(synapse, admin_token)
    assert refused.status == 400, refused
    assert "banned_usernames_lookalikes" in refused.json()["error"]


FORWARDED_WARNING = "x_forwarded: true"


def startup_warnings(server: SynapseServer) -> list[str]:
    return [
        line
        for line in server.log_text().splitlines()
        if " - WARNING - " in line and "synapse_email_gate.config.listeners" in line
    ]


def test_a_forwarded_listener_is_warned_about_at_start_up(
    synapse: SynapseServer, make_synapse: Callable[..., SynapseServer], synapse_db: str
) -> None:
    assert startup_warnings(synapse) == []  # the usual listener: x_forwarded off
    forwarded = make_synapse({}, db=synapse_db, start=False)
    forwarded.config["listeners"][0]["x_forwarded"] = True
    forwarded.write_config()
    forwarded.start()  # the module is made before the listeners start: logged by now
    (line,) = startup_warnings(forwarded)
    assert f"port {forwarded.port}" in line and FORWARDED_WARNING in line
    assert "client IPs can be spoofed" in line and "trusted_proxies" in line
