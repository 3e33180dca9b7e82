"""Editing invite tokens against a real Synapse: uses allowed, expiry, disabled and
enabled again, through the admin API and the CLI; the module's row is the truth
and Synapse's registration_tokens row follows it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import Registration, register, registered, token_valid
from tests.integration.test_cli import cli, ok  # the command, run as a subprocess

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@editmod:test.local"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("editmod", "editmod-password-1")


def admin(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(token), **kw
    )


def new_token(synapse: SynapseServer, token: str, **body: Any) -> str:
    made = admin(synapse, token, "POST", "tokens", json={"uses_allowed": 1, **body})
    assert made.status == 201, made
    name: str = made.json()["token"]
    return name


def synapse_expiry(synapse: SynapseServer, token: str) -> int | None:
    (row,) = synapse.query("SELECT expiry_time FROM registration_tokens WHERE token = ?", (token,))
    return None if row[0] is None else int(row[0])


def test_a_disabled_token_cannot_register_and_enabled_again_it_can(
    synapse: SynapseServer, mod_token: str
) -> None:
    token = new_token(synapse, mod_token)
    # A registration that passed the token stage before the token was disabled.
    started = Registration(synapse.base_url, "beforedisable")
    started.token_stage(token)

    disabled = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"disabled": True})
    assert disabled.status == 200, disabled
    assert disabled.json()["state"] == "disabled" and not disabled.json()["valid"]
    assert not token_valid(synapse.base_url, token)
    late = started.finish()
    assert late.status == 403, late
    assert late.json()["errcode"] == "EMAIL_GATE_TOKEN_DISABLED", late
    assert not registered(register(synapse, "whiledisabled", token))

    enabled = admin(synapse, mod_token, "POST", f"tokens/{token}", json={"disabled": False})
    assert enabled.status == 200 and enabled.json()["state"] == "active", enabled
    assert token_valid(synapse.base_url, token)
    assert registered(register(synapse, "afterenable", token))
    assert not token_valid(synapse.base_url, token)  # its one use is made


def test_uses_allowed_can_grow_and_cannot_go_below_the_uses_made(
    synapse: SynapseServer, mod_token: str
) -> None:
    token = new_token(synapse, mod_token)
    assert registered(register(synapse, "firstofmany", token))
    assert not token_valid(synapse.base_url, token)

    grown = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"uses_allowed": 3})
    assert grown.status == 200, grown
    assert grown.json()["uses_left"] == 2 and grown.json()["state"] == "active"
    assert token_valid(synapse.base_url, token)
    assert registered(register(synapse, "secondofmany", token))

    below = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"uses_allowed": 1})
    assert below.status == 400, below
    assert "below the 2 use(s) already made" in below.json()["error"]
    assert admin(synapse, mod_token, "GET", f"tokens/{token}").json()["uses_allowed"] == 3

    closed = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"uses_allowed": 2})
    assert closed.status == 200 and closed.json()["state"] == "used", closed
    assert not token_valid(synapse.base_url, token)
    assert not registered(register(synapse, "thirdofmany", token))


def test_synapses_row_follows_the_expiry(synapse: SynapseServer, mod_token: str) -> None:
    token = new_token(synapse, mod_token, expiry="1d")
    later = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"expiry": "30d"})
    assert later.status == 200, later
    expiry = later.json()["expiry_time"]
    now_ms = int(time.time() * 1000)
    assert 29 * DAY_MS < expiry - now_ms <= 30 * DAY_MS
    assert synapse_expiry(synapse, token) == expiry

    admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"disabled": True})
    stopped = synapse_expiry(synapse, token)
    assert stopped is not None and stopped <= int(time.time() * 1000)
    admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"disabled": False})
    assert synapse_expiry(synapse, token) == expiry


def test_only_server_admins_make_a_token_unlimited_or_never_expiring(
    synapse: SynapseServer, mod_token: str, admin_token: str
) -> None:
    token = new_token(synapse, mod_token)
    for body in ({"uses_allowed": None}, {"expiry": "never"}):
        refused = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json=body)
        assert refused.status == 403, refused
        assert refused.json()["errcode"] == "EMAIL_GATE_ADMIN_ONLY"
    unlimited = admin(synapse, admin_token, "PATCH", f"tokens/{token}", json={"uses_allowed": None})
    assert unlimited.status == 200 and unlimited.json()["uses_allowed"] is None
    disabled = admin(synapse, admin_token, "PATCH", f"tokens/{token}", json={"disabled": True})
    assert disabled.status == 200, disabled
    # Enabling an unlimited token brings it back into force: for admins too.
    again = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"disabled": False})
    assert again.status == 403 and again.json()["errcode"] == "EMAIL_GATE_ADMIN_ONLY"
    # Limiting it is fine for a moderator.
    limited = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json={"uses_allowed": 5})
    assert limited.status == 200 and limited.json()["state"] == "disabled"


def test_edits_refuse_bad_input_and_other_tokens_with_a_message(
    synapse: SynapseServer, mod_token: str, admin_token: str
) -> None:
    token = new_token(synapse, mod_token)
    cases = [
        ({}, 400, "nothing to change"),
        ({"colour": "red"}, 400, "unknown field(s): colour"),
        ({"uses_allowed": -1}, 400, "an integer from 0 to"),
        ({"disabled": "yes"}, 400, "true or false"),
        ({"expiry": "soon"}, 400, "duration like 7d"),
    ]
    for body, status, text in cases:
        answer = admin(synapse, mod_token, "PATCH", f"tokens/{token}", json=body)
        assert answer.status == status and text in answer.json()["error"], (body, answer)
    missing = admin(synapse, mod_token, "PATCH", "tokens/NoSuchToken1234", json={"disabled": True})
    assert missing.status == 404
    foreign = http.post(
        synapse.url("/_synapse/admin/v1/registration_tokens/new"),
        json={"token": "MadeBySynapse1", "uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert foreign.status == 200, foreign
    elsewhere = admin(
        synapse, mod_token, "PATCH", "tokens/MadeBySynapse1", json={"uses_allowed": 2}
    )
    assert elsewhere.status == 400 and "Synapse's admin API" in elsewhere.json()["error"]


def test_the_cli_edits_disables_and_enables(synapse: SynapseServer, mod_token: str) -> None:
    token = new_token(synapse, mod_token)
    edited = ok(cli(synapse, mod_token, "tokens", "edit", token, "--uses", "4", "--expiry", "3d"))
    assert "uses allowed" in edited and "4" in edited, edited
    assert f"register?token={token}" in edited  # the invite link
    assert "disabled" in ok(cli(synapse, mod_token, "tokens", "disable", token))
    assert not token_valid(synapse.base_url, token)
    assert "active" in ok(cli(synapse, mod_token, "tokens", "enable", token))
    assert token_valid(synapse.base_url, token)
    refused = cli(synapse, mod_token, "tokens", "edit", token, "--unlimited")
    assert refused.returncode == 1 and "EMAIL_GATE_ADMIN_ONLY" in refused.stderr, refused
    nothing = cli(synapse, mod_token, "tokens", "edit", token)
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    created = ok(cli(synapse, mod_token, "tokens", "create"))
    assert "Invite links:" in created and "register?token=" in created
