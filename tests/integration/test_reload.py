"""The live policy: `policy_file` re-read when it changes and on admin/reload, bad
files refused with the previous policy kept, patterns matched in linear time;
against a real Synapse on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    ask_from,
    expect_no_mail,
    post_form,
    reload_policy,
    request_token,
)

NEUTRAL = {"banned_usernames": ["^initialban$"]}
CHECK_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    path = tmp_path_factory.mktemp(f"reload-{synapse_db}") / "policy.yaml"
    path.write_text(yaml.safe_dump(NEUTRAL))
    return path


@pytest.fixture(scope="module")
def gate_config(policy_file: Path) -> dict[str, Any]:
    return {
        "policy_file": str(policy_file),
        "policy_check_interval": f"{int(CHECK_INTERVAL_S)}s",
        "banned_usernames": ["^configban$"],
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


@pytest.fixture(autouse=True)
def neutral_policy(synapse: SynapseServer, policy_file: Path, admin_token: str) -> Iterator[None]:
    """Each test starts and ends with the neutral policy in force."""
    yield
    write_policy(policy_file, NEUTRAL)
    assert reload_policy(synapse, admin_token).status == 200


def write_policy(path: Path, policy: dict[str, Any] | str) -> None:
    """Replace the file at once (write aside, rename), as deployment tools do.

    Not in place: the periodic check could read a half-written file (see
    test_a_changed_file_is_in_force_within_seconds_without_a_reload)."""
    text = policy if isinstance(policy, str) else yaml.safe_dump(policy)
    aside = path.with_name(path.name + ".new")
    aside.write_text(text)
    os.replace(aside, path)


def username_verdict(synapse: SynapseServer, name: str) -> str:
    """The errcode for ``name`` with an unusable address: EMAIL_GATE_USERNAME_BANNED
    if the name is banned, else EMAIL_GATE_INVALID_EMAIL. Sends nothing either way."""
    answer = ask(synapse, name, "not-an-address")
    assert answer.status == 400, answer
    errcode: str = answer.json()["errcode"]
    assert errcode in ("EMAIL_GATE_USERNAME_BANNED", "EMAIL_GATE_INVALID_EMAIL"), answer
    return errcode


def is_banned(synapse: SynapseServer, name: str) -> bool:
    return username_verdict(synapse, name) == "EMAIL_GATE_USERNAME_BANNED"


def wait_until_banned(synapse: SynapseServer, name: str, timeout: float) -> float:
    """Seconds until ``name`` is refused as banned; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if is_banned(synapse, name):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{name!r} not banned after {timeout}s")


def test_a_changed_file_is_in_force_within_seconds_without_a_reload(
    synapse: SynapseServer, policy_file: Path
) -> None:
    assert is_banned(synapse, "initialban")
    assert not is_banned(synapse, "ondisk1")
    # Rewritten in place, as an editor might (the check may see it half-written first).
    policy_file.write_text(yaml.safe_dump({"banned_usernames": ["^ondisk"]}))
    assert wait_until_banned(synapse, "ondisk1", timeout=CHECK_INTERVAL_S + 4) < 5
    assert not is_banned(synapse, "initialban")  # the file's lists were replaced
    assert is_banned(synapse, "configban")  # homeserver.yaml's stay

    # Replaced by a rename (a new inode), as deployment tools do it.
    write_policy(policy_file, {"banned_usernames": ["^renamed"]})
    assert wait_until_banned(synapse, "renamed1", timeout=CHECK_INTERVAL_S + 4) < 5
    assert not is_banned(synapse, "ondisk1")


def test_the_reload_endpoint_puts_a_good_file_in_force_at_once(
    synapse: SynapseServer, mailbox: SmtpCatcher, policy_file: Path, admin_token: str
) -> None:
    write_policy(
        policy_file,
        {
            "banned_usernames": ["^endpointban$"],
            "banned_ips": ["203.0.113.77", "2001:db8:77::/48"],
            "banned_emails": ["reloaded@example.org"],
        },
    )
    answer = reload_policy(synapse, admin_token)
    assert answer.status == 200, answer
    assert answer.json()["status"] == "reloaded"
    assert is_banned(synapse, "endpointban")
    assert ask_from(synapse, "reloadip", "reloadip@example.org", "203.0.113.77").status == 403
    assert ask_from(synapse, "reloadip", "reloadip@example.org", "2001:db8:77::1").status == 403
    answer = ask_from(synapse, "reloadmail", "reloaded@example.org", "198.51.100.70")
    assert answer.status == 202
    expect_no_mail(synapse, mailbox, "reloadmail", "reloaded@example.org", reason="email_banned")


def test_a_yaml_error_is_refused_naming_the_file_and_the_old_policy_stays(
    synapse: SynapseServer, policy_file: Path, admin_token: str
) -> None:
    write_policy(policy_file, {"banned_usernames": ["^stillbanned$"]})
    assert reload_policy(synapse, admin_token).status == 200

    write_policy(policy_file, "banned_usernames: [unclosed\nbanned_ips: {: :\n")
    answer = reload_policy(synapse, admin_token)
    assert answer.status == 400, answer
    body = answer.json()
    assert body["errcode"] == "EMAIL_GATE_POLICY_INVALID"
    assert str(policy_file) in body["error"], body
    assert is_banned(synapse, "stillbanned")
    # The periodic check sees the broken file too, and keeps the old policy as well.
    time.sleep(CHECK_INTERVAL_S * 1.5)
    assert is_banned(synapse, "stillbanned")
    assert str(policy_file) in synapse.log_text()


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ({"banned_usernames": ["^fine$", "(unclosed"]}, "(unclosed"),
        ({"banned_usernames": ["(a)\\1"]}, "(a)\\1"),  # a backreference: not linear-time
        ({"banned_usernames": ["(?<=x)y"]}, "(?<=x)y"),  # lookbehind, likewise
        ({"banned_emails": ["/[z-a]/"]}, "[z-a]"),
        ({"banned_ips": ["203.0.113.300"]}, "203.0.113.300"),
        ({"banned_usernames": "^notalist$"}, "banned_usernames"),
        ({"banned_usernamez": ["^typo$"]}, "banned_usernamez"),
    ],
)
def test_a_bad_entry_is_refused_naming_it_and_the_old_policy_stays(
    synapse: SynapseServer,
    policy_file: Path,
    admin_token: str,
    policy: dict[str, Any],
    named: str,
) -> None:
    write_policy(policy_file, {"banned_usernames": ["^keptban$"]})
    assert reload_policy(synapse, admin_token).status == 200

    write_policy(policy_file, policy)
    answer = reload_policy(synapse, admin_token)
    assert answer.status == 400, answer
    body = answer.json()
    assert body["errcode"] == "EMAIL_GATE_POLICY_INVALID"
    assert named in body["error"] or repr(named)[1:-1] in body["error"], body
    assert is_banned(synapse, "keptban")
    assert not is_banned(synapse, "fine")


def test_reload_is_for_server_admins_only(synapse: SynapseServer) -> None:
    assert reload_policy(synapse, None).status == 401
    unknown = reload_policy(synapse, "not-a-real-token")
    assert unknown.status == 401, unknown
    user_token = synapse.register_user("plainuser", "plain user password")
    forbidden = reload_policy(synapse, user_token)
    assert forbidden.status == 403, forbidden
    assert forbidden.json()["errcode"] == "M_FORBIDDEN"


def test_a_catastrophic_backtracking_pattern_does_not_slow_a_request(
    synapse: SynapseServer, policy_file: Path, admin_token: str
) -> None:
    # Each takes exponential time in a backtracking engine on "aaaa...a-".
    write_policy(policy_file, {"banned_usernames": ["(a+)+$", "^(a|aa)+$", "(a*)*b"]})
    assert reload_policy(synapse, admin_token).status == 200
    assert is_banned(synapse, "aaaa")  # the patterns are in force

    for name in ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "a" * 34 + "-", "a" * 200 + "-"]:
        start = time.monotonic()
        answer = ask(synapse, name, "not-an-address")
        elapsed = time.monotonic() - start
        assert answer.status == 400, answer
        assert answer.json()["errcode"] != "EMAIL_GATE_USERNAME_BANNED", name
        assert elapsed < 0.5, f"{name!r}: {elapsed:.2f}s"


def test_a_limit_raised_by_reload_applies_at_once(
    synapse: SynapseServer, mailbox: SmtpCatcher, policy_file: Path, admin_token: str
) -> None:
    """Moderators raise a limit during a rush of sign-ups: a client that was told to
    wait must be let in at once, not after the wait computed under the old limit."""
    tight = {"per_ip": {"burst": 1, "per_second": 0.0001}}
    write_policy(policy_file, {"rate_limits": tight})
    assert reload_policy(synapse, admin_token).status == 200
    request_token(synapse, mailbox, "raise1", "raise1@example.org", ip="198.51.100.80")
    limited = ask_from(synapse, "raise2", "raise2@example.org", "198.51.100.80")
    assert limited.status == 429, limited
    assert int(limited.header("Retry-After") or 0) > 3600  # 1 / 0.0001 s

    loose = {"per_ip": {"burst": 1000, "per_second": 100}}
    write_policy(policy_file, {"rate_limits": loose})
    assert reload_policy(synapse, admin_token).status == 200
    time.sleep(0.05)  # 5 tokens' worth of refill at the new rate
    again = ask_from(synapse, "raise3", "raise3@example.org", "198.51.100.80")
    assert again.status == 202, (
        "the raised per-IP limit is not in force: the process still remembers the "
        f"bucket as empty under the old limit (RequestService._empty_until): {again}"
    )
    mailbox.wait_for_rcpt("raise3@example.org")


def test_a_file_changing_one_rate_limit_value_keeps_the_others_from_homeserver_yaml(
    synapse: SynapseServer, mailbox: SmtpCatcher, policy_file: Path, admin_token: str
) -> None:
    """homeserver.yaml: per_ip burst 1000, 100 per second. The file sets only the
    burst to 1: the refill rate stays 100 per second (not the built-in 5 an hour)."""
    write_policy(policy_file, {"rate_limits": {"per_ip": {"burst": 1}}})
    assert reload_policy(synapse, admin_token).status == 200
    ip = "198.51.100.81"
    request_token(synapse, mailbox, "merge1", "merge1@example.org", ip=ip)  # the one token
    time.sleep(0.05)  # 5 tokens' worth at 100 per second; the bucket holds 1
    # At the built-in 5 an hour this would wait 12 minutes (429).
    again = ask_from(synapse, "merge2", "merge2@example.org", ip)
    assert again.status == 202, again
    mailbox.wait_for_rcpt("merge2@example.org")


def test_ban_reasons_are_never_told_and_expired_bans_lift_by_themselves(
    synapse: SynapseServer, mailbox: SmtpCatcher, policy_file: Path, admin_token: str
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    lifts_at = now + datetime.timedelta(seconds=2)
    past = (now - datetime.timedelta(days=1)).date().isoformat()
    write_policy(
        policy_file,
        {
            "banned_usernames": [
                {"match": "^expiring$", "reason": "SECRET-1", "expires": lifts_at.isoformat()},
                {"match": "^expired$", "reason": "SECRET-2", "expires": past},
                {"match": "^reasoned$", "reason": "SECRET-3"},
            ],
            "banned_ips": [{"match": "203.0.113.88", "reason": "SECRET-4"}],
            "banned_emails": [{"match": "reasoned@example.org", "reason": "SECRET-5"}],
        },
    )
    assert reload_policy(synapse, admin_token).status == 200

    answers = [
        ask(synapse, "reasoned", "x@example.org"),
        post_form(synapse, "reasoned", "x@example.org"),
        ask_from(synapse, "reasonip", "reasonip@example.org", "203.0.113.88"),
        post_form(
            synapse, "reasonip", "x@example.org", headers={"X-Forwarded-For": "203.0.113.88"}
        ),
        ask_from(synapse, "reasonmail", "reasoned@example.org", "198.51.100.88"),
    ]
    assert [a.status for a in answers] == [400, 400, 403, 403, 202]
    for answer in answers:
        assert "SECRET" not in answer.text, answer
        assert "SECRET" not in str(answer.headers), answer
    expect_no_mail(synapse, mailbox, "reasonmail", "reasoned@example.org", reason="email_banned")

    assert not is_banned(synapse, "expired")
    assert is_banned(synapse, "expiring")
    lifted = lifts_at.timestamp() + CHECK_INTERVAL_S + 3
    while is_banned(synapse, "expiring"):
        assert time.time() < lifted, "a ban past its expiry is still in force"
        time.sleep(0.1)
    assert time.time() >= lifts_at.timestamp() - 0.05
    assert is_banned(synapse, "reasoned")
