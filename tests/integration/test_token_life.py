"""A token's whole life against a real Synapse on SQLite and PostgreSQL: an abandoned
attempt does not use it up, N uses make at most N accounts under a race, a ban
that takes effect revokes it, a refused registration gets a 403 with an errcode,
the module fails closed, and moderators see which accounts a token made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    Registration,
    db_execute,
    race_to_finish,
    register,
    registered,
    request_token,
    scrape,
    token_valid,
    user_exists,
    value,
    wait_until,
)

MODERATOR = "@mod:test.local"
TOKEN_USED = "EMAIL_GATE_TOKEN_USED"
TOKEN_BUSY = "EMAIL_GATE_TOKEN_BUSY"
USERNAME_BANNED = "EMAIL_GATE_USERNAME_BANNED"
EMPTY_POLICY = "banned_usernames: []\n"


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    path = tmp_path_factory.mktemp(f"token-life-{synapse_db}") / "policy.yaml"
    path.write_text(EMPTY_POLICY)
    return path


@pytest.fixture(scope="module")
def gate_config(policy_file: Path) -> dict[str, Any]:
    return {
        "policy_file": str(policy_file),
        # Long: here a changed file takes effect by the reload the tests ask for, which
        # then counts what it revoked (the periodic check is tested on its own server).
        "policy_check_interval": "60s",
        "banned_usernames": ["^root$"],
        "trusted_proxies": ["127.0.0.1"],
        "moderators": [MODERATOR],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


@pytest.fixture
def policy(policy_file: Path, synapse: SynapseServer, mod_token: str) -> Iterator[Path]:
    """The policy file, emptied again (and reloaded) after the test."""
    yield policy_file
    policy_file.write_text(EMPTY_POLICY)
    assert reload(synapse, mod_token).status == 200


def admin(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(token), **kw
    )


def reload(synapse: SynapseServer, token: str) -> http.Response:
    return admin(synapse, token, "POST", "reload")


def invite(synapse: SynapseServer, token: str, uses: int | None) -> str:
    created = admin(synapse, token, "POST", "tokens", json={"uses_allowed": uses})
    assert created.status == 201, created
    text: str = created.json()["token"]
    return text


def errcode(answer: http.Response) -> str | None:
    code: str | None = answer.json().get("errcode")
    return code


def request_status(synapse: SynapseServer, localpart: str) -> tuple[str, str | None]:
    rows = synapse.query(
        "SELECT status, reason FROM email_gate_requests WHERE localpart = ? "
        "ORDER BY created_ts DESC",
        (localpart,),
    )
    return rows[0][0], rows[0][1]


def audit_details(synapse: SynapseServer, token: str, action: str) -> list[tuple[str, str]]:
    entries = admin(synapse, token, "GET", "audit?limit=200").json()["entries"]
    return [(e["actor"], e["detail"]) for e in entries if e["action"] == action]


# --- abandoned attempts ----------------------------------------------------------


def test_an_abandoned_attempt_leaves_a_mailed_token_to_a_fresh_client(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    token = request_token(synapse, mailbox, "abby", "abby@example.org")
    assert token_valid(synapse.base_url, token)
    abandoned = Registration(synapse.base_url, "abby")
    abandoned.token_stage(token)  # ... and the client dies here
    # Synapse counts the token pending now, but the module counts its uses.
    assert token_valid(synapse.base_url, token)

    fresh = register(synapse, "abby", token)
    assert registered(fresh), fresh
    assert fresh.user_id == "@abby:test.local"
    assert not token_valid(synapse.base_url, token)

    # The abandoned session, finished late, makes nothing and says why.
    late = abandoned.finish()
    assert late.status == 403, late
    assert errcode(late) == TOKEN_USED
    shown = admin(synapse, mod_token, "GET", f"tokens/{token}").json()
    assert (shown["kind"], shown["state"], shown["completed"]) == ("email", "used", 1)
    assert [a["user_id"] for a in shown["accounts"]] == ["@abby:test.local"]
    assert shown["reserved_for"] == "abby"
    assert request_status(synapse, "abby") == ("registered", None)


def test_a_late_finish_of_an_abandoned_invite_session_makes_no_second_account(
    synapse: SynapseServer, mod_token: str
) -> None:
    token = invite(synapse, mod_token, 1)
    abandoned = Registration(synapse.base_url, "earlybird")
    abandoned.token_stage(token)
    assert token_valid(synapse.base_url, token)

    assert registered(register(synapse, "freshbird", token))
    assert not token_valid(synapse.base_url, token)
    late = abandoned.finish()
    assert late.status == 403, late
    assert errcode(late) == TOKEN_USED
    assert not user_exists(synapse, "earlybird")
    assert user_exists(synapse, "freshbird")


# --- exact use counts under a race -----------------------------------------------------


@pytest.mark.parametrize("uses", [1, 2])
def test_ten_clients_racing_with_an_invite_token_make_exactly_its_uses(
    synapse: SynapseServer, mod_token: str, uses: int
) -> None:
    for run in range(2):
        token = invite(synapse, mod_token, uses)
        names = [f"race{uses}x{run}x{i}" for i in range(10)]
        sessions = [Registration(synapse.base_url, name) for name in names]
        for session in sessions:  # every one passes Synapse's token stage ...
            session.token_stage(token)
        answers = race_to_finish(sessions)  # ... and they finish at the same moment
        made = [a for a in answers if a.status == 200]
        assert len(made) == uses, [(a.status, a.body[:80]) for a in answers]
        refused = [a for a in answers if a.status != 200]
        assert {(a.status, errcode(a)) for a in refused} <= {(403, TOKEN_USED), (403, TOKEN_BUSY)}
        assert sum(user_exists(synapse, name) for name in names) == uses
        shown = admin(synapse, mod_token, "GET", f"tokens/{token}").json()
        assert shown["completed"] == uses and len(shown["accounts"]) == uses
        assert shown["state"] == "used"
        assert not token_valid(synapse.base_url, token)


# --- bans after the mail -----------------------------------------------------------------


def test_an_address_ban_in_the_policy_file_revokes_the_mailed_token_at_reload(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str, policy: Path
) -> None:
    token = request_token(synapse, mailbox, "addrban", "Addr.Ban+news@example.org")
    assert token_valid(synapse.base_url, token)
    policy.write_text(yaml.safe_dump({"banned_emails": ["addr.ban@example.org"]}))
    answer = reload(synapse, mod_token)
    assert answer.status == 200, answer
    assert answer.json()["revoked"] == 1
    assert not token_valid(synapse.base_url, token)
    assert not registered(register(synapse, "addrban", token))
    assert request_status(synapse, "addrban") == ("revoked", "email_banned")
    assert any(
        "policy reload: 1 revoked (email_banned=1)" in detail
        for _, detail in audit_details(synapse, mod_token, "ban.revoke")
    )
    assert reload(synapse, mod_token).json()["revoked"] == 0  # once only


def test_a_policy_file_change_revokes_within_seconds_without_a_reload(
    make_synapse: Any, mailbox: SmtpCatcher, synapse_db: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(EMPTY_POLICY)
    own: SynapseServer = make_synapse(
        {"policy_file": str(policy), "policy_check_interval": "1s"}, db=synapse_db, metrics=True
    )
    ops = own.register_admin("ops", "ops-password-1")
    token = request_token(own, mailbox, "loopban", "loopban@example.org")
    policy.write_text(yaml.safe_dump({"banned_usernames": ["^loopban$"]}))
    wait_until(lambda: not token_valid(own.base_url, token), "the token is revoked")
    assert request_status(own, "loopban") == ("revoked", "username_banned")
    assert ("email_gate", "policy_file changed: 1 revoked (username_banned=1)") in audit_details(
        own, ops, "ban.revoke"
    )
    revoked = value(scrape(own), "synapse_email_gate_revoked_total", reason="username_banned")
    assert revoked == 1


def test_a_username_ban_through_the_api_revokes_and_says_how_many(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    token = request_token(synapse, mailbox, "apiban", "apiban@example.org")
    ban = admin(synapse, mod_token, "POST", "bans", json={"kind": "username", "match": "^apiban$"})
    assert ban.status == 201, ban
    assert ban.json()["revoked"] == 1
    assert not token_valid(synapse.base_url, token)
    assert not registered(register(synapse, "apiban", token))
    # The name stays held until the hold lapses, like any request's: a revocation must
    # not free the names of mailed requests only.
    held = "SELECT COUNT(*) FROM email_gate_reservations WHERE localpart = 'apiban'"
    assert synapse.query(held)[0][0] == 1


def test_an_ip_ban_revokes_the_tokens_asked_for_from_that_network(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str
) -> None:
    inside = request_token(synapse, mailbox, "ipban1", "ipban1@example.org", ip="198.51.100.77")
    outside = request_token(synapse, mailbox, "ipban2", "ipban2@example.org", ip="198.51.100.7")
    ban = admin(
        synapse, mod_token, "POST", "bans", json={"kind": "ip", "match": "198.51.100.64/26"}
    )
    assert ban.status == 201 and ban.json()["revoked"] == 1, ban
    assert not token_valid(synapse.base_url, inside)
    assert token_valid(synapse.base_url, outside)
    assert request_status(synapse, "ipban1") == ("revoked", "ip_banned")


def test_a_username_banned_after_the_token_stage_is_refused_with_403_not_429(
    synapse: SynapseServer, mailbox: SmtpCatcher, mod_token: str, admin_token: str
) -> None:
    token = request_token(synapse, mailbox, "lateban", "lateban@example.org")
    session = Registration(synapse.base_url, "lateban")
    session.token_stage(token)
    ban = admin(synapse, mod_token, "POST", "bans", json={"kind": "username", "match": "^lateban"})
    assert ban.json()["revoked"] == 1
    answer = session.finish()
    assert answer.status == 403, answer
    assert errcode(answer) == USERNAME_BANNED
    assert not user_exists(synapse, "lateban")

    # The same for a token the module did not make (Synapse's own admin API).
    made = http.post(
        synapse.url("/_synapse/admin/v1/registration_tokens/new"),
        json={"token": "synapse-made-1", "uses_allowed": 5},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 200, made
    other = Registration(synapse.base_url, "root")
    other.token_stage("synapse-made-1")
    answer = other.finish()
    assert (answer.status, errcode(answer)) == (403, USERNAME_BANNED), answer
    other = Registration(synapse.base_url, "latebanned2")
    other.token_stage("synapse-made-1")
    assert other.finish().status == 403
    # A name nobody banned registers with it as Synapse would.
    fine = Registration(synapse.base_url, "synapsemade")
    fine.token_stage("synapse-made-1")
    assert fine.finish().status == 200


# --- what moderators see -------------------------------------------------------------------


def test_a_token_names_its_creator_and_accounts_and_an_account_its_invite_tree(
    synapse: SynapseServer, mod_token: str, admin_token: str
) -> None:
    first = invite(synapse, mod_token, 2)
    helper = register(synapse, "helper", first)
    assert registered(helper)
    # Only server admins change who moderates.
    allowed = admin(
        synapse, admin_token, "POST", "moderators", json={"entry": "@helper:test.local"}
    )
    assert allowed.status == 201, allowed
    second = invite(synapse, helper.access_token, 1)
    assert registered(register(synapse, "newbie", second))

    shown = admin(synapse, mod_token, "GET", f"tokens/{first}").json()
    assert (shown["kind"], shown["created_by"], shown["state"]) == ("invite", MODERATOR, "active")
    assert (shown["completed"], shown["uses_left"]) == (1, 1)
    (account,) = shown["accounts"]
    assert account["user_id"] == "@helper:test.local"
    assert (account["ip"], account["via"]) == ("127.0.0.1", "client")
    listed = {t["token"]: t for t in admin(synapse, mod_token, "GET", "tokens").json()["tokens"]}
    assert listed[second]["created_by"] == "@helper:test.local"
    assert [a["user_id"] for a in listed[second]["accounts"]] == ["@newbie:test.local"]

    tree = admin(synapse, mod_token, "GET", "accounts/@helper:test.local").json()
    assert (tree["token"], tree["token_kind"], tree["token_created_by"]) == (
        first,
        "invite",
        MODERATOR,
    )
    assert tree["tokens_created"] == [{"token": second, "accounts": ["@newbie:test.local"]}]
    assert tree["invited"] == ["@newbie:test.local"]
    newbie = admin(synapse, mod_token, "GET", "accounts/@newbie:test.local").json()
    assert newbie["token_created_by"] == "@helper:test.local"
    moderator = admin(synapse, mod_token, "GET", f"accounts/{MODERATOR}").json()
    assert moderator["token"] is None  # not made with a token of the module
    assert first in [t["token"] for t in moderator["tokens_created"]]
    assert admin(synapse, mod_token, "GET", "accounts/@nobody:test.local").status == 404


# --- failing closed ------------------------------------------------------------------------------


def test_when_the_module_cannot_check_it_refuses_retryably_and_the_token_survives(
    make_synapse: Any, mailbox: SmtpCatcher, synapse_db: str
) -> None:
    own: SynapseServer = make_synapse(
        {"rate_limits": {"per_ip": {"burst": 100, "per_second": 10}}}, db=synapse_db
    )
    token = request_token(own, mailbox, "closed", "closed@example.org")
    db_execute(own, "ALTER TABLE email_gate_token_uses RENAME TO email_gate_token_uses_away")
    try:
        session = Registration(own.base_url, "closed")
        session.token_stage(token)
        answer = session.finish()
        assert answer.status == 503, answer
        assert errcode(answer) == "EMAIL_GATE_UNAVAILABLE"
        assert answer.json()["retry_after_ms"] > 0
        assert answer.header("Retry-After") is not None
        assert not user_exists(own, "closed")
    finally:
        db_execute(own, "ALTER TABLE email_gate_token_uses_away RENAME TO email_gate_token_uses")
    assert token_valid(own.base_url, token)
    # After the repair the same session finishes, under the reserved name.
    assert session.finish().status == 200
    assert user_exists(own, "closed")


def test_with_hashed_addresses_an_exact_address_ban_still_revokes(
    make_synapse: Any, mailbox: SmtpCatcher, synapse_db: str
) -> None:
    own: SynapseServer = make_synapse(
        {"privacy": {"hash_emails": True, "hash_secret": "a long enough secret for tests"}},
        db=synapse_db,
    )
    ops = own.register_admin("ops", "ops-password-1")
    token = request_token(own, mailbox, "hashed", "Hashed+x@example.net")
    wait_until(
        lambda: own.query("SELECT email FROM email_gate_requests WHERE localpart = 'hashed'")[0][
            0
        ].startswith("hmac:"),
        "only the address's hash is left",
    )
    # A domain entry cannot be compared with a hash: nothing to revoke.
    domain = admin(own, ops, "POST", "bans", json={"kind": "email", "match": "*@example.net"})
    assert domain.json()["revoked"] == 0
    exact = admin(own, ops, "POST", "bans", json={"kind": "email", "match": "hashed@example.net"})
    assert exact.json()["revoked"] == 1
    assert not token_valid(own.base_url, token)
