"""Probation and mass action from the moderation room and from the command line,
against a real Synapse: the same service paths as the admin API, with the room's
confirmation step and the CLI's `--confirm`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.accounts_helpers import admin_call, gate_account
from tests.integration.matrix import MatrixUser
from tests.integration.test_cli import cli, ok

MODERATOR = "@mod:test.local"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": [MODERATOR],
        "moderation_room": "#moderation:test.local",
        "trusted_proxies": ["127.0.0.1"],
        "probation": {"duration": "1h"},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod(synapse: SynapseServer) -> MatrixUser:
    return MatrixUser(synapse, "mod")


@pytest.fixture(scope="module")
def room(synapse: SynapseServer, mod: MatrixUser) -> str:
    room_id = mod.open_moderation_room()
    return room_id


def test_the_room_shows_and_lifts_a_probation(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod: MatrixUser, room: str
) -> None:
    newbie = gate_account(synapse, mailbox, "roomnewbie", "rn@example.org")
    shown = mod.ask_bot(room, f"!gate account {newbie.user_id}")
    assert "Probation: on probation (until " in shown, shown
    lifted = mod.ask_bot(room, f"!gate account {newbie.user_id} lift-probation")
    assert lifted == f"Probation of {newbie.user_id} lifted.", lifted
    shown = mod.ask_bot(room, f"!gate account {newbie.user_id}")
    assert f"Probation: probation lifted by {MODERATOR}" in shown, shown


def test_the_room_locks_accounts_after_a_confirmation(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod: MatrixUser, room: str
) -> None:
    wave = [
        gate_account(synapse, mailbox, f"roomwave{n}", f"w{n}@roomwave.example", f"192.0.2.{n}")
        for n in (1, 2)
    ]
    listing = mod.ask_bot(room, "!gate accounts domain=roomwave.example")
    assert all(c.user_id in listing for c in wave), listing
    assert "192.0.2.x" in listing and "192.0.2.1 " not in listing  # masked here

    dry = mod.ask_bot(room, "!gate accounts lock domain=roomwave.example")
    assert "Dry run: lock would change 2 account(s)" in dry, dry
    assert all(c.whoami().status == 200 for c in wave)
    match = re.search(r"^(!gate accounts lock .* confirm=\w+)$", dry, re.MULTILINE)
    assert match, dry
    done = mod.ask_bot(room, match.group(1))
    assert done == "Done: lock changed 2 account(s).", done
    for client in wave:
        assert client.whoami().json()["errcode"] == "M_USER_LOCKED"
    assert "deactivate" in mod.ask_bot(room, "!gate accounts deactivate domain=roomwave.example")


def test_the_command_line_shows_lifts_lists_and_suspends(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod: MatrixUser
) -> None:
    token = mod.access_token
    newbie = gate_account(synapse, mailbox, "clinewbie", "cn@cliwave.example", "198.51.100.9")
    shown = ok(cli(synapse, token, "accounts", "show", newbie.user_id))
    assert re.search(r"probation:\s+on probation \(until ", shown), shown
    assert "lifted" in ok(cli(synapse, token, "accounts", "lift-probation", newbie.user_id))
    shown = ok(cli(synapse, token, "accounts", "show", newbie.user_id))
    assert "probation lifted by" in shown, shown

    listing = ok(cli(synapse, token, "accounts", "list", "--cidr", "198.51.100.0/24"))
    assert newbie.user_id in listing and "cn@cliwave.example" in listing, listing

    dry = ok(cli(synapse, token, "accounts", "suspend", "--domain", "cliwave.example"))
    assert "dry run: suspend would change 1 account(s)" in dry, dry
    line = dry.strip().splitlines()[-1]
    assert line.startswith("synapse-email-gate accounts suspend --domain cliwave.example"), line
    code = line.rsplit(" ", 1)[1]
    accounts = admin_call(synapse, token, "GET", "accounts?domain=cliwave.example").json()
    assert accounts["accounts"][0]["suspended"] is False
    done = ok(
        cli(synapse, token, "accounts", "suspend", "--domain", "cliwave.example", "--confirm", code)
    )
    assert f"suspend: changed 1 account(s)\n- {newbie.user_id}" in done, done
    listed = json.loads(
        ok(cli(synapse, token, "--json", "accounts", "list", "--domain", "cliwave.example"))
    )
    assert listed["accounts"][0]["suspended"] is True

    usage = cli(synapse, token, "accounts", "lock")
    assert usage.returncode == 2, usage
    assert "name at least one filter" in usage.stderr
