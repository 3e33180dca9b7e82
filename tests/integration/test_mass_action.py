"""Mass action on real accounts made through the gate, on SQLite and PostgreSQL:
filters by IP, CIDR, address domain, token and time window; a dry run changes
nothing; lock, suspend and deactivate take effect in Synapse (no more requests,
no messages, no login); server admins and the bot are never touched; deactivation
is for server admins only; every action is audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.accounts_helpers import (
    admin_call,
    errcode,
    gate_account,
    ordinary_account,
)
from tests.integration.helpers import (
    login,
    register,
    registered,
    scrape,
    value,
    wait_until,
)

MODERATOR = "@mod:test.local"
PASSWORD = "correct horse battery"  # what helpers.register sets


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": [MODERATOR],
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


def users(listing: dict[str, Any]) -> set[str]:
    return {a["user_id"] for a in listing["accounts"]}


def listed(synapse: SynapseServer, access_token: str, query: str) -> dict[str, Any]:
    answer = admin_call(synapse, access_token, "GET", f"accounts?{query}")
    assert answer.status == 200, answer
    body: dict[str, Any] = answer.json()
    return body


def act(
    synapse: SynapseServer, access_token: str, action: str, filter_: dict[str, Any], **more: Any
) -> Any:
    return admin_call(
        synapse,
        access_token,
        "POST",
        "accounts/action",
        json={"filter": filter_, "action": action, **more},
    )


def confirmed(
    synapse: SynapseServer, access_token: str, action: str, filter_: dict[str, Any]
) -> dict[str, Any]:
    """The dry run, then the action with its confirm."""
    dry = act(synapse, access_token, action, filter_)
    assert dry.status == 200, dry
    done = act(synapse, access_token, action, filter_, dry_run=False, confirm=dry.json()["confirm"])
    assert done.status == 200, done
    body: dict[str, Any] = done.json()
    return body


def test_filters_by_ip_cidr_domain_token_and_time(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    wave = [
        gate_account(synapse, mailbox, f"wave{n}", f"wave{n}@spam.example", f"198.51.100.{n}")
        for n in range(1, 4)
    ]
    sub = gate_account(synapse, mailbox, "subwave", "sub@mx.spam.example", "198.51.101.7")
    good = gate_account(synapse, mailbox, "goodone", "good@good.example", "203.0.113.5")
    invite = admin_call(synapse, mod_token, "POST", "tokens", json={"uses_allowed": 2})
    assert invite.status == 201, invite
    token = invite.json()["token"]
    invited = [register(synapse, name, token) for name in ("guest1", "guest2")]
    assert all(registered(r) for r in invited)
    wave_ids = {c.user_id for c in wave}

    assert users(listed(synapse, mod_token, "cidr=198.51.100.0/24")) == wave_ids
    assert users(listed(synapse, mod_token, "ip=203.0.113.5")) == {good.user_id}
    assert users(listed(synapse, mod_token, "domain=spam.example")) == wave_ids | {sub.user_id}
    assert users(listed(synapse, mod_token, "domain=spam.example&cidr=198.51.101.0/24")) == {
        sub.user_id
    }
    by_token = listed(synapse, mod_token, f"token={token}")
    assert users(by_token) == {str(r.user_id) for r in invited}
    assert {a["token"] for a in by_token["accounts"]} == {token}

    everyone = listed(synapse, mod_token, "")["accounts"]
    ts = {a["user_id"]: a["registered_ts"] for a in everyone}
    window = f"since={ts[wave[1].user_id]}&until={ts[sub.user_id]}"
    assert users(listed(synapse, mod_token, window)) == {wave[1].user_id, wave[2].user_id}

    (shown,) = listed(synapse, mod_token, "ip=198.51.100.2")["accounts"]
    assert shown["user_id"] == wave[1].user_id
    assert shown["email"] == "wave2@spam.example"
    assert shown["request_ip"] == "198.51.100.2"
    assert shown["token"] is None  # a mailed token is shown only in its mail
    assert (shown["locked"], shown["suspended"], shown["deactivated"]) == (False, False, False)


def test_bad_filters_are_refused_by_name(synapse: SynapseServer, mod_token: str) -> None:
    for query, word in (
        ("cidr=nonsense", "cidr"),
        ("ip=1.2.3", "ip"),
        ("since=yesterday-ish", "since"),
        ("domian=spam.example", "domian"),
    ):
        answer = admin_call(synapse, mod_token, "GET", f"accounts?{query}")
        assert answer.status == 400, answer
        assert answer.json()["errcode"] == "M_INVALID_PARAM"
        assert word in answer.json()["error"]
    empty = act(synapse, mod_token, "lock", {})
    assert (empty.status, empty.json()["errcode"]) == (400, "M_INVALID_PARAM")


def test_a_dry_run_changes_nothing_and_lock_needs_its_confirm(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    accounts = [
        gate_account(synapse, mailbox, f"lockme{n}", f"l{n}@lock.example", f"192.0.2.{n}")
        for n in (1, 2)
    ]
    filter_ = {"domain": "lock.example"}
    dry = act(synapse, mod_token, "lock", filter_)
    assert dry.status == 200, dry
    assert dry.json()["dry_run"] is True
    assert set(dry.json()["affected"]) == {c.user_id for c in accounts}
    assert all(c.whoami().status == 200 for c in accounts)
    assert not any(
        a["locked"] for a in listed(synapse, mod_token, "domain=lock.example")["accounts"]
    )

    missing = act(synapse, mod_token, "lock", filter_, dry_run=False)
    assert (missing.status, missing.json()["errcode"]) == (400, "EMAIL_GATE_NOT_CONFIRMED")
    wrong = act(synapse, mod_token, "lock", filter_, dry_run=False, confirm="0" * 16)
    assert (wrong.status, wrong.json()["errcode"]) == (409, "EMAIL_GATE_NOT_CONFIRMED")
    assert all(c.whoami().status == 200 for c in accounts)

    done = act(synapse, mod_token, "lock", filter_, dry_run=False, confirm=dry.json()["confirm"])
    assert done.status == 200, done
    assert set(done.json()["affected"]) == {c.user_id for c in accounts}
    for client in accounts:
        refused = client.whoami()
        assert (refused.status, refused.json()["errcode"]) == (401, "M_USER_LOCKED")
    assert all(a["locked"] for a in listed(synapse, mod_token, "domain=lock.example")["accounts"])
    entries = admin_call(synapse, mod_token, "GET", "audit").json()["entries"]
    assert any(e["action"] == "accounts.lock" and "lock.example" in e["detail"] for e in entries)
    assert {e["target"] for e in entries if e["action"] == "account.lock"} >= {
        c.user_id for c in accounts
    }

    assert value(scrape(synapse), "synapse_email_gate_account_actions_total", action="lock") >= 2
    unlocked = confirmed(synapse, mod_token, "unlock", filter_)
    assert set(unlocked["affected"]) == {c.user_id for c in accounts}
    assert all(c.whoami().status == 200 for c in accounts)


def test_suspended_accounts_cannot_send(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    host = ordinary_account(synapse, "suspendhost")
    room = host.create_room()
    assert errcode(room) is None, room
    spammer = gate_account(synapse, mailbox, "suspendme", "s@suspend.example", "192.0.2.50")
    host.invite(room.room_id, spammer.user_id)
    assert errcode(spammer.join(room.room_id)) is None
    assert errcode(spammer.send(room.room_id, "before")) is None

    done = confirmed(synapse, mod_token, "suspend", {"ip": "192.0.2.50"})
    assert done["affected"] == [spammer.user_id]
    assert errcode(spammer.send(room.room_id, "after")) == "M_USER_SUSPENDED"
    assert errcode(host.send(room.room_id, "the host still can")) is None


def test_only_server_admins_deactivate_and_then_login_fails(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str, admin_token: str
) -> None:
    victim = gate_account(synapse, mailbox, "goner", "g@gone.example", "192.0.2.60")
    filter_ = {"domain": "gone.example"}
    refused = act(synapse, mod_token, "deactivate", filter_)
    assert (refused.status, refused.json()["errcode"]) == (403, "EMAIL_GATE_ADMIN_ONLY")
    assert login(synapse, "goner", PASSWORD).status == 200

    done = confirmed(synapse, admin_token, "deactivate", filter_)
    assert done["affected"] == [victim.user_id]
    # Synapse forgets a deactivated account's password and access tokens.
    failed = login(synapse, "goner", PASSWORD)
    assert (failed.status, failed.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert victim.whoami().status == 401
    (shown,) = listed(synapse, mod_token, "domain=gone.example")["accounts"]
    assert shown["deactivated"] is True


def test_server_admins_and_the_bot_are_never_touched(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str, admin_token: str
) -> None:
    boss = gate_account(synapse, mailbox, "bossy", "b@protect.example", "192.0.2.70")
    plain = gate_account(synapse, mailbox, "plainy", "p@protect.example", "192.0.2.71")
    made_admin = synapse_admin_put(synapse, admin_token, boss.user_id, {"admin": True})
    assert made_admin == 200
    done = confirmed(synapse, mod_token, "lock", {"domain": "protect.example"})
    assert done["affected"] == [plain.user_id]
    assert done["skipped"] == [{"user_id": boss.user_id, "why": "server admin"}]
    assert boss.whoami().status == 200


def synapse_admin_put(
    synapse: SynapseServer, admin_token: str, user_id: str, body: dict[str, Any]
) -> int:
    answer = http.request(
        "PUT",
        synapse.url(f"/_synapse/admin/v2/users/{user_id}"),
        headers=synapse.auth_headers(admin_token),
        json=body,
    )
    return int(answer.status)


def test_with_hashed_addresses_the_listing_shows_no_address(
    make_synapse: Callable[..., SynapseServer], mailbox: SmtpCatcher, synapse_db: str
) -> None:
    server = make_synapse(
        {
            "moderators": [MODERATOR],
            "privacy": {"hash_emails": True, "hash_secret": "a-long-enough-secret-1"},
            "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        },
        db=synapse_db,
    )
    token = server.register_user("mod", "mod-password-1")
    private = gate_account(server, mailbox, "private", "me@hidden.example")

    def shown() -> dict[str, Any] | None:
        (account,) = listed(server, token, "since=0")["accounts"]
        return account if account["email_hashed"] else None

    wait_until(shown, "the address to be replaced by its hash")
    account = shown()
    assert account is not None
    assert (account["user_id"], account["email"]) == (private.user_id, None)
    assert listed(server, token, "domain=hidden.example")["accounts"] == []
