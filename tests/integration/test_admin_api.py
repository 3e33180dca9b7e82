"""The admin API against a real Synapse: auth, invite tokens, bans, moderators, requests, audit."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, quiet, register, registered, request_token


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "banned_usernames": [
            "^plain-config-ban$",
            {"match": "^reasoned$", "reason": "impersonation", "expires": "2099-01-01"},
        ],
        "moderators": ["@mod:test.local", r"@team-.*:test\.local$"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def admin(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(token), **kw
    )


@pytest.fixture(scope="module")
def mod_token(synapse: SynapseServer) -> str:
    return synapse.register_user("mod", "mod-password-1")


def test_no_token_is_401_and_a_plain_user_is_403(synapse: SynapseServer) -> None:
    assert http.get(synapse.gate_url + "admin/tokens").status == 401
    user = synapse.register_user("plainuser", "plain-password-1")
    answer = admin(synapse, user, "GET", "tokens")
    assert answer.status == 403
    assert answer.json()["errcode"] == "M_FORBIDDEN"


def test_server_admins_and_configured_moderators_may_moderate(
    synapse: SynapseServer, admin_token: str, mod_token: str
) -> None:
    team = synapse.register_user("team-blue", "team-password-1")
    for token in (admin_token, mod_token, team):
        assert admin(synapse, token, "GET", "tokens").status == 200


def test_created_invite_token_registers_an_account_and_a_deleted_one_does_not(
    synapse: SynapseServer, mod_token: str
) -> None:
    created = admin(synapse, mod_token, "POST", "tokens", json={"uses_allowed": 1, "expiry": "7d"})
    assert created.status == 201, created
    token = created.json()["token"]
    assert created.json()["uses_left"] == 1
    assert created.json()["expires"].startswith("in 7 days")
    assert registered(register(synapse, "invited1", token))
    shown = admin(synapse, mod_token, "GET", f"tokens/{token}").json()
    assert shown["completed"] == 1 and shown["valid"] is False

    doomed = admin(synapse, mod_token, "POST", "tokens", json={"token": "doomed-token"}).json()
    assert admin(synapse, mod_token, "DELETE", f"tokens/{doomed['token']}").status == 200
    assert not registered(register(synapse, "invited2", "doomed-token"))
    assert admin(synapse, mod_token, "GET", "tokens/doomed-token").status == 404


def test_tokens_are_listed_with_valid_only_filter(synapse: SynapseServer, mod_token: str) -> None:
    admin(synapse, mod_token, "POST", "tokens", json={"token": "listed-ok-token", "expiry": "30d"})
    admin(
        synapse, mod_token, "POST", "tokens", json={"token": "listed-used-tkn", "uses_allowed": 0}
    )
    all_tokens = {t["token"] for t in admin(synapse, mod_token, "GET", "tokens").json()["tokens"]}
    valid = {
        t["token"] for t in admin(synapse, mod_token, "GET", "tokens?valid=true").json()["tokens"]
    }
    assert {"listed-ok-token", "listed-used-tkn"} <= all_tokens
    assert "listed-ok-token" in valid and "listed-used-tkn" not in valid


def test_token_creation_refuses_bad_input_with_a_message(
    synapse: SynapseServer, mod_token: str
) -> None:
    for body, words in (
        ({"token": "has space"}, "token must be"),
        ({"uses_allowed": -1}, "uses_allowed"),
        ({"expiry": "yesterday"}, "expiry must be"),
        ({"length": 100}, "length"),
    ):
        answer = admin(synapse, mod_token, "POST", "tokens", json=body)
        assert answer.status == 400, (body, answer)
        assert words in answer.json()["error"]


def test_delete_all_needs_the_confirmation_phrase(
    synapse: SynapseServer, make_synapse: Any
) -> None:
    own = make_synapse({})
    token = own.register_admin("boss", "boss-password-1")
    admin(own, token, "POST", "tokens", json={"token": "keep-me-token-1"})
    refused = admin(own, token, "POST", "tokens/delete_all", json={})
    assert refused.status == 400 and "delete all tokens" in refused.json()["error"]
    assert admin(own, token, "GET", "tokens/keep-me-token-1").status == 200
    done = admin(own, token, "POST", "tokens/delete_all", json={"confirm": "delete all tokens"})
    assert done.status == 200 and done.json()["deleted_count"] >= 1
    assert admin(own, token, "GET", "tokens").json()["tokens"] == []


def test_bans_added_and_removed_take_effect_at_once(
    synapse: SynapseServer, mod_token: str, mailbox: SmtpCatcher
) -> None:
    added = admin(
        synapse,
        mod_token,
        "POST",
        "bans",
        json={"kind": "username", "match": "^spammer", "reason": "bot wave", "expires": "1d"},
    )
    assert added.status == 201, added
    refused = ask(synapse, "spammer42", "s42@example.org")
    assert refused.status == 400 and refused.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
    listed = admin(synapse, mod_token, "GET", "bans").json()["bans"]
    assert any(b["match"] == "^spammer" and b["reason"] == "bot wave" for b in listed)

    assert admin(synapse, mod_token, "DELETE", f"bans/{added.json()['id']}").status == 200
    assert ask(synapse, "spammer43", "s43@example.org").status == 202


def test_an_email_ban_added_by_a_moderator_is_silent(
    synapse: SynapseServer, mod_token: str, mailbox: SmtpCatcher
) -> None:
    admin(synapse, mod_token, "POST", "bans", json={"kind": "email", "match": "*@blocked.example"})
    answer = ask(synapse, "blockeduser", "x@mail.blocked.example")
    assert answer.status == 202
    assert quiet(mailbox, to="x@mail.blocked.example") == []


def test_invalid_ban_entries_are_refused_with_the_reason(
    synapse: SynapseServer, mod_token: str
) -> None:
    for body in (
        {"kind": "username", "match": "(a)\\1"},
        {"kind": "ip", "match": "not-an-ip"},
        {"kind": "email", "match": "foo"},
        {"kind": "planet", "match": "x"},
    ):
        answer = admin(synapse, mod_token, "POST", "bans", json=body)
        assert answer.status == 400, (body, answer)
        assert answer.json()["error"]


def test_moderators_can_be_allowed_and_disallowed(synapse: SynapseServer, admin_token: str) -> None:
    helper = synapse.register_user("helper", "helper-password-1")
    assert admin(synapse, helper, "GET", "tokens").status == 403
    allowed = admin(
        synapse, admin_token, "POST", "moderators", json={"entry": "@helper:test.local"}
    )
    assert allowed.status == 201
    assert admin(synapse, helper, "GET", "tokens").status == 200
    entries = admin(synapse, admin_token, "GET", "moderators").json()["moderators"]
    assert [e["entry"] for e in entries] == ["@helper:test.local"]
    assert admin(synapse, admin_token, "DELETE", "moderators/@helper:test.local").status == 200
    assert admin(synapse, helper, "GET", "tokens").status == 403


def test_requests_are_listed_newest_first_searchable_and_shown(
    synapse: SynapseServer, mod_token: str, mailbox: SmtpCatcher
) -> None:
    request_token(synapse, mailbox, "listme1", "listme1@example.org")
    request_token(synapse, mailbox, "listme2", "listme2@example.org")
    found = admin(synapse, mod_token, "GET", "requests?q=listme").json()["requests"]
    assert [r["localpart"] for r in found] == ["listme2", "listme1"]
    assert all(r["status"] == "issued" for r in found)
    page = admin(synapse, mod_token, "GET", "requests?q=listme&limit=1").json()
    assert len(page["requests"]) == 1 and page["next_from"] == 1
    # The catcher has the mail before the sender records it as sent: allow a moment.
    deadline = time.monotonic() + 5
    while True:
        shown = admin(synapse, mod_token, "GET", f"requests/{found[0]['id']}").json()
        if shown["mails"][0]["status"] == "sent" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert shown["mails"][0]["status"] == "sent"
    assert admin(synapse, mod_token, "GET", "requests?status=bogus").status == 400
    assert admin(synapse, mod_token, "GET", "requests/nope").status == 404


def test_audit_log_records_who_did_what(synapse: SynapseServer, mod_token: str) -> None:
    admin(synapse, mod_token, "POST", "tokens", json={"token": "audited-token"})
    entries = admin(synapse, mod_token, "GET", "audit").json()["entries"]
    assert any(
        e["actor"] == "@mod:test.local"
        and e["action"] == "token.create"
        and e["target"] == "audited-token"
        for e in entries
    )


def test_every_ban_in_force_is_shown_to_moderators_with_reason_and_source(
    synapse: SynapseServer, mod_token: str
) -> None:
    admin(synapse, mod_token, "POST", "bans", json={"kind": "ip", "match": "192.0.2.0/24"})
    view = admin(synapse, mod_token, "GET", "policy").json()
    usernames = {e["match"]: e for e in view["banned_usernames"]}
    assert usernames["^reasoned$"]["reason"] == "impersonation"
    assert usernames["^reasoned$"]["source"] == "config"
    assert usernames["^plain-config-ban$"]["reason"] is None
    assert {"match": "192.0.2.0/24", "source": "stored"}.items() <= {
        k: v for e in view["banned_ips"] for k, v in e.items() if e["match"] == "192.0.2.0/24"
    }.items()
    refused = ask(synapse, "reasoned", "reasoned@example.org")
    assert "impersonation" not in refused.text


def test_only_server_admins_change_who_moderates(synapse: SynapseServer, mod_token: str) -> None:
    for method, path, body in (
        ("POST", "moderators", {"entry": "@mod-friend:test.local"}),
        ("POST", "moderators", {"entry": ".*"}),
        ("DELETE", "moderators/@mod:test.local", None),
    ):
        answer = admin(synapse, mod_token, method, path, json=body)
        assert answer.status == 403, (path, body, answer)
        assert answer.json() == {
            "errcode": "EMAIL_GATE_ADMIN_ONLY",
            "error": "only server admins may change who moderates",
        }
    friend = synapse.register_user("mod-friend", "friend-password-1")
    assert admin(synapse, friend, "GET", "tokens").status == 403


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (".*", r"must end in :test\.local$"),
        ("@.*", r"must end in :test\.local$"),
        ("@.*:test.local$", r"must end in :test\.local$"),  # `.` is any character
        (r"@.*:test\.local\.evil\.example$", r"must end in :test\.local$"),
        (r".*:test\.local$", "matches every user of test.local"),
        (r"@.*|x:test\.local$", "matches every user of test.local"),
        (r"@(a)\1:test\.local$", "RE2"),
        ("@someone:elsewhere.example", "is not a user of this server (test.local)"),
    ],
)
def test_moderator_entries_can_only_name_users_of_this_server(
    synapse: SynapseServer, admin_token: str, entry: str, words: str
) -> None:
    answer = admin(synapse, admin_token, "POST", "moderators", json={"entry": entry})
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "M_INVALID_PARAM"
    assert words in answer.json()["error"], answer.json()
    listed = admin(synapse, admin_token, "GET", "moderators").json()["moderators"]
    assert entry not in [e["entry"] for e in listed]


def test_moderators_get_no_unlimited_never_expiring_or_short_tokens(
    synapse: SynapseServer, mod_token: str, admin_token: str
) -> None:
    for body, status, errcode, words in (
        ({"token": "a"}, 400, "M_INVALID_PARAM", "token must be 12 to 64 characters"),
        ({"token": "elevenchars"}, 400, "M_INVALID_PARAM", "token must be 12 to 64 characters"),
        ({"length": 8}, 400, "M_INVALID_PARAM", "length must be an integer from 12 to 64"),
        ({"uses_allowed": None}, 403, "EMAIL_GATE_ADMIN_ONLY", "unlimited uses"),
        ({"expiry": "never"}, 403, "EMAIL_GATE_ADMIN_ONLY", "never expire"),
        ({"expiry": None}, 403, "EMAIL_GATE_ADMIN_ONLY", "never expire"),
        ({"expiry_time": None}, 403, "EMAIL_GATE_ADMIN_ONLY", "never expire"),
    ):
        answer = admin(synapse, mod_token, "POST", "tokens", json=body)
        assert (answer.status, answer.json()["errcode"]) == (status, errcode), (body, answer)
        assert words in answer.json()["error"], (body, answer.json())
    assert admin(synapse, mod_token, "GET", "tokens/a").status == 404
    assert admin(synapse, mod_token, "POST", "tokens", json={"length": 12}).status == 201
    forever = admin(
        synapse,
        admin_token,
        "POST",
        "tokens",
        json={"token": "admins-forever", "uses_allowed": None, "expiry": "never"},
    )
    assert forever.status == 201, forever
    assert (forever.json()["uses_left"], forever.json()["expires"]) == (None, "never")


@pytest.mark.parametrize(
    ("entry", "user"),
    [
        ("@night/shift:test.local", "night/shift"),
        (r"@ops/.*:test\.local$", "ops/day"),
        (r"@x(%41)?y/.*:test\.local$", "xy/z"),  # a `%` must not be decoded twice
    ],
)
def test_moderator_entries_with_a_slash_or_percent_can_be_removed(
    synapse: SynapseServer, admin_token: str, entry: str, user: str
) -> None:
    helper = synapse.register_user(user, "slash-password-1")
    assert admin(synapse, admin_token, "POST", "moderators", json={"entry": entry}).status == 201
    assert admin(synapse, helper, "GET", "tokens").status == 200
    removed = admin(synapse, admin_token, "DELETE", f"moderators/{quote(entry, safe='')}")
    assert removed.status == 200, removed
    assert removed.json() == {"removed": entry}
    assert admin(synapse, helper, "GET", "tokens").status == 403
    again = admin(synapse, admin_token, "DELETE", f"moderators/{quote(entry, safe='')}")
    assert again.status == 404 and again.json()["errcode"] == "M_NOT_FOUND"


def test_a_token_mailed_to_a_person_is_never_shown_by_the_api(
    synapse: SynapseServer, mod_token: str, admin_token: str, mailbox: SmtpCatcher
) -> None:
    mailed = request_token(synapse, mailbox, "boundcarol", "carol@example.org")
    for token in (mod_token, admin_token):
        for path in ("tokens", "tokens?valid=true", "requests?q=boundcarol"):
            answer = admin(synapse, token, "GET", path)
            assert answer.status == 200, answer
            assert mailed not in answer.text, path
        found = admin(synapse, token, "GET", "requests?q=boundcarol").json()["requests"]
        assert len(found) == 1 and "token" not in found[0]
        shown = admin(synapse, token, "GET", f"requests/{found[0]['id']}")
        assert shown.status == 200 and mailed not in shown.text
    assert registered(register(synapse, "boundcarol", mailed))


def test_a_moderator_entry_for_everyone_stops_synapse_at_start_up(make_synapse: Any) -> None:
    server = make_synapse({"moderators": ["@mod:test.local", ".*"]}, start=False)
    with pytest.raises(RuntimeError) as failed:
        server.start()
    assert "email_gate: moderators: item 1: the regex '.*' must end in" in str(failed.value)
