"""Probation on a real Synapse, through matrix-nio: an account made through the gate
may not create rooms, invite or send a burst of messages; an ordinary account may;
moderators see it and lift it early (audited), and it ends by itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.accounts_helpers import (
    Client,
    admin_call,
    errcode,
    gate_account,
    ordinary_account,
)
from tests.integration.helpers import scrape, value, wait_until

MODERATOR = "@mod:test.local"
PER_MINUTE = 3
REFUSALS = "synapse_email_gate_probation_refusals_total"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": [MODERATOR],
        "probation": {"duration": "1h", "messages_per_minute": PER_MINUTE},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


@pytest.fixture(scope="module")
def host(synapse: SynapseServer) -> Client:
    """An ordinary account with a room the newcomers join."""
    return ordinary_account(synapse, "host")


def room_of(host: Client) -> str:
    created = host.create_room()
    assert errcode(created) is None, created
    return str(created.room_id)


def test_a_new_gate_account_may_not_create_rooms_or_invite(
    synapse: SynapseServer, mailbox: SmtpCatcher, host: Client
) -> None:
    newbie = gate_account(synapse, mailbox, "newbie1", "newbie1@example.org")
    refused = newbie.create_room()
    assert errcode(refused) == "M_FORBIDDEN", refused
    assert "probation" in refused.message

    room_id = room_of(host)
    assert errcode(host.invite(room_id, newbie.user_id)) is None
    assert errcode(newbie.join(room_id)) is None
    refused = newbie.invite(room_id, host.synapse.user_id("mod"))
    assert errcode(refused) == "M_FORBIDDEN", refused
    assert "probation" in refused.message
    samples = scrape(synapse)
    for what in ("create_room", "invite"):
        counted = value(samples, REFUSALS, what=what)
        assert counted >= 1, (what, counted)


def test_a_new_gate_account_may_send_only_so_many_messages_a_minute(
    synapse: SynapseServer, mailbox: SmtpCatcher, host: Client
) -> None:
    newbie = gate_account(synapse, mailbox, "newbie2", "newbie2@example.org")
    room_id = room_of(host)
    host.invite(room_id, newbie.user_id)
    assert errcode(newbie.join(room_id)) is None
    for n in range(PER_MINUTE):
        assert errcode(newbie.send(room_id, f"hello {n}")) is None
    refused = newbie.send(room_id, "one too many")
    assert errcode(refused) == "M_LIMIT_EXCEEDED", refused
    assert refused.retry_after_ms and refused.retry_after_ms > 0


def test_an_ordinary_account_is_not_on_probation(synapse: SynapseServer, host: Client) -> None:
    other = ordinary_account(synapse, "oldtimer")
    room_id = room_of(other)
    assert errcode(other.invite(room_id, host.user_id)) is None
    for n in range(PER_MINUTE * 3):
        assert errcode(other.send(room_id, f"chat {n}")) is None


def test_moderators_see_the_probation_and_lift_it_early(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    newbie = gate_account(synapse, mailbox, "newbie3", "newbie3@example.org")
    shown = admin_call(synapse, mod_token, "GET", f"accounts/{newbie.user_id}").json()
    probation = shown["probation"]
    assert probation["active"] is True
    assert probation["status"].startswith("on probation (until ")
    assert errcode(newbie.create_room()) == "M_FORBIDDEN"

    lifted = admin_call(
        synapse, mod_token, "POST", f"accounts/{newbie.user_id}/probation", json={"lift": True}
    )
    assert lifted.status == 200, lifted
    assert lifted.json()["probation"]["active"] is False
    assert lifted.json()["probation"]["lifted_by"] == MODERATOR
    assert errcode(newbie.create_room()) is None
    again = admin_call(
        synapse, mod_token, "POST", f"accounts/{newbie.user_id}/probation", json={"lift": True}
    )
    assert (again.status, again.json()["errcode"]) == (409, "EMAIL_GATE_NOT_ON_PROBATION")
    entries = admin_call(synapse, mod_token, "GET", "audit").json()["entries"]
    assert any(
        e["action"] == "account.probation.lift" and e["target"] == newbie.user_id for e in entries
    ), entries


def test_lifting_needs_lift_true_and_a_probationer(
    synapse: SynapseServer, mod_token: str, host: Client
) -> None:
    path = f"accounts/{host.user_id}/probation"
    bad = admin_call(synapse, mod_token, "POST", path, json={"lift": "yes"})
    assert (bad.status, bad.json()["errcode"]) == (400, "M_INVALID_PARAM")
    ordinary = admin_call(synapse, mod_token, "POST", path, json={"lift": True})
    assert (ordinary.status, ordinary.json()["errcode"]) == (409, "EMAIL_GATE_NOT_ON_PROBATION")
    assert (
        admin_call(synapse, mod_token, "GET", f"accounts/{host.user_id}").json()["probation"]
        is None
    )
    missing = admin_call(
        synapse, mod_token, "POST", "accounts/@ghost:test.local/probation", json={"lift": True}
    )
    assert missing.status == 404, missing


def test_probation_ends_by_itself(
    make_synapse: Callable[..., SynapseServer], mailbox: SmtpCatcher, synapse_db: str
) -> None:
    server = make_synapse(
        {
            "probation": {"duration": "3s", "refresh_interval": "1s"},
            "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        },
        db=synapse_db,
    )
    newbie = gate_account(server, mailbox, "brief", "brief@example.org")
    assert errcode(newbie.create_room()) == "M_FORBIDDEN"
    admin_token = server.register_admin("ops2", "ops2-password-1")

    def ended() -> bool:
        shown = admin_call(server, admin_token, "GET", f"accounts/{newbie.user_id}").json()
        return shown["probation"]["active"] is False

    # Asked of the admin API, not by creating rooms: Synapse limits how fast one may try.
    wait_until(ended, "the probation to end", 15)
    assert errcode(newbie.create_room()) is None


def test_accounts_made_before_probation_was_switched_on_are_unaffected(
    make_synapse: Callable[..., SynapseServer], mailbox: SmtpCatcher, synapse_db: str
) -> None:
    server = make_synapse(
        {"rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}}}, db=synapse_db
    )
    veteran = gate_account(server, mailbox, "veteran", "veteran@example.org")
    assert errcode(veteran.create_room()) is None  # probation is off by default

    server.module_config["probation"] = {"duration": "1h"}
    server.write_config()
    server.restart()
    newbie = gate_account(server, mailbox, "latecomer", "latecomer@example.org")
    assert errcode(newbie.create_room()) == "M_FORBIDDEN"
    assert errcode(veteran.create_room()) is None
