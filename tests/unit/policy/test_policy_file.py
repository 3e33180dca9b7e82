"""Pure policy decisions: username cleanup, layering of policies, and the policy file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.policy_lists import Bucket, PolicyLists, RateLimits
from synapse_email_gate.config.reader import Section
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.policy.live import LivePolicy, read_policy_file
from synapse_email_gate.requests.usernames import clean_username
from synapse_email_gate.rules.addresses import parse_email

NOW = 1_800_000_000_000  # 2027-01-15
HOUR = 3_600_000


def lists(raw: dict[str, Any]) -> PolicyLists:
    """The policy keys of a homeserver.yaml or policy-file mapping."""
    section = Section(raw, "")
    result = PolicyLists.from_section(section)
    section.finish()
    return result


# --- clean_username ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "localpart"),
    [
        ("alice", "alice"),
        ("  Alice\t", "alice"),
        ("ALICE", "alice"),
        ("@alice", "alice"),
        ("@Alice:example.org", "alice"),
        (" @alice:example.org ", "alice"),
        # Another server's ID is not stripped: check_username then refuses the ':'.
        ("@alice:other.org", "alice:other.org"),
        ("alice:example.org", "alice:example.org"),
        ("", ""),
        ("   ", ""),
        ("@", ""),
        ("@:example.org", ""),
        ("Zoë", "zoë"),
    ],
)
def test_clean_username(typed: str, localpart: str) -> None:
    assert clean_username(typed, "example.org") == localpart


def test_clean_username_is_idempotent() -> None:
    once = clean_username(" @Bob.Smith:example.org ", "example.org")
    assert clean_username(once, "example.org") == once == "bob.smith"


# --- Policy.build: layering ------------------------------------------------------


def test_ban_lists_of_all_layers_are_united() -> None:
    base = lists(
        {
            "banned_usernames": ["admin"],
            "banned_emails": ["spam@example.com"],
            "banned_ips": ["203.0.113.7"],
            "allowed_email_domains": ["example.org"],
        }
    )
    file = lists(
        {
            "banned_usernames": ["^root$", "admin"],
            "banned_emails": ["*@example.net"],
            "banned_ips": ["2001:db8::/32"],
            "allowed_email_domains": ["example.com"],
        }
    )
    policy = Policy.build([base, file], NOW)
    assert policy.username_ban("siteadmin") == "admin"
    assert policy.username_ban("root") == "^root$"
    assert policy.username_ban("rooty") is None
    assert policy.usernames.sources == ("admin", "^root$")  # duplicates once
    assert policy.email_ban(parse_email("spam@example.com")) == "spam@example.com"
    assert policy.email_ban(parse_email("x@mail.example.net")) == "*@example.net"
    assert policy.ip_ban("203.0.113.7") == "203.0.113.7"
    assert policy.ip_ban("2001:db8::1") == "2001:db8::/32"
    assert policy.ip_ban("198.51.100.1") is None
    assert policy.domain_refusal(parse_email("a@example.org")) is None
    assert policy.domain_refusal(parse_email("a@example.com")) is None
    assert policy.domain_refusal(parse_email("a@example.edu")) == "domain_not_allowed"


def test_defaults_without_any_setting() -> None:
    policy = Policy.build([lists({})], NOW)
    assert policy.block_disposable is True
    assert policy.rate_limits == RateLimits()
    assert policy.domain_refusal(parse_email("x@mailinator.com")) == "disposable"
    assert policy.next_expiry_ts is None


@pytest.mark.parametrize(
    ("base", "file", "blocked"),
    [
        (None, None, True),
        (False, None, False),  # an unset later layer keeps the earlier value
        (False, True, True),
        (True, False, False),
        (None, False, False),
    ],
)
def test_later_block_disposable_wins(base: bool | None, file: bool | None, blocked: bool) -> None:
    layers = [PolicyLists(block_disposable_emails=base), PolicyLists(block_disposable_emails=file)]
    assert Policy.build(layers, NOW).block_disposable is blocked


def test_later_rate_limits_change_only_the_values_they_set() -> None:
    base = lists(
        {"rate_limits": {"per_ip": {"burst": 50, "per_second": 1}, "global": {"burst": 500}}}
    )
    file = lists({"rate_limits": {"per_ip": {"burst": 2}}})
    limits = Policy.build([base, file], NOW).rate_limits
    # The file's per_ip.burst wins; the base's per_ip.per_second and global stay.
    assert limits.per_ip == Bucket(burst=2, per_second=1.0)
    assert limits.global_ == Bucket(burst=500, per_second=RateLimits().global_.per_second)
    assert limits.per_email == RateLimits().per_email
    assert Policy.build([base, lists({})], NOW).rate_limits.global_.burst == 500
    # A third layer (stored bans never set limits, but the rule is general) on top.
    top = lists({"rate_limits": {"global": {"per_second": 3}}})
    stacked = Policy.build([base, file, top], NOW).rate_limits
    assert stacked.global_ == Bucket(burst=500, per_second=3.0)
    assert stacked.per_ip == Bucket(burst=2, per_second=1.0)


def test_an_empty_rate_limits_block_changes_nothing() -> None:
    base = lists({"rate_limits": {"global": {"burst": 500}}})
    assert Policy.build([base, lists({"rate_limits": {}})], NOW).rate_limits.global_.burst == 500


def test_allow_list_names_a_disposable_domain_explicitly() -> None:
    policy = Policy.build([lists({"allowed_email_domains": ["mailinator.com"]})], NOW)
    assert policy.domain_refusal(parse_email("x@mailinator.com")) is None


def test_expired_entries_do_not_apply() -> None:
    base = lists(
        {
            "banned_usernames": [
                {"match": "^old", "expires": "2020-01-01T00:00:00Z"},
                {"match": "^soon", "reason": "cooling off", "expires": "2027-02-01"},
                {"match": "^later", "expires": "2028-01-01T12:00:00+02:00"},
            ],
            "banned_ips": [{"match": "203.0.113.0/24", "expires": "2020-01-01"}],
            "banned_emails": [{"match": "*@example.net", "expires": "2020-01-01"}],
        }
    )
    policy = Policy.build([base], NOW)
    assert policy.username_ban("oldtimer") is None
    assert policy.username_ban("soonish") == "^soon"
    assert policy.ip_ban("203.0.113.9") is None
    assert policy.email_ban(parse_email("a@example.net")) is None
    # The earliest expiry still ahead: when the policy has to be rebuilt.
    assert policy.next_expiry_ts == 1_801_440_000_000  # 2027-02-01T00:00:00Z
    after = Policy.build([base], 1_801_440_000_000)
    assert after.username_ban("soonish") is None
    assert after.username_ban("laterally") == "^later"


# --- read_policy_file ---------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "email_gate_policy.yaml"
    path.write_text(text)
    return str(path)


def refusal(path: str) -> str:
    with pytest.raises(ValueError) as info:
        read_policy_file(path)
    return str(info.value)


GOOD_FILE = """\
# Bans and limits moderators change without a restart.
banned_usernames:
  - "(?i)admin"
  - {match: "^spam", reason: "wave of 2026-05", expires: "2026-12-31T00:00:00Z"}
banned_emails: ["spam@example.com", "*@mailinator.com", "/^bulk[0-9]+@/"]
banned_ips: ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]
allowed_email_domains: []
block_disposable_emails: true
rate_limits:
  per_ip: {burst: 3, per_second: 0.001}
"""


def test_a_good_file_is_read(tmp_path: Path) -> None:
    read = read_policy_file(write(tmp_path, GOOD_FILE))
    assert [e.match for e in read.banned_usernames] == ["(?i)admin", "^spam"]
    assert read.banned_usernames[1].reason == "wave of 2026-05"
    assert [e.match for e in read.banned_emails] == [
        "spam@example.com",
        "*@mailinator.com",
        "/^bulk[0-9]+@/",
    ]
    assert len(read.banned_ips) == 3
    assert read.block_disposable_emails is True
    assert read.rate_limits == RateLimits(per_ip=Bucket(burst=3, per_second=0.001))


def test_an_empty_file_is_an_empty_policy(tmp_path: Path) -> None:
    assert read_policy_file(write(tmp_path, "# nothing banned yet\n")) == PolicyLists()


def test_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'banned_usernames: ["admin"\nbanned_ips: []\n')
    message = refusal(path)
    assert message.startswith(f"{path}: not valid YAML")
    assert "line" in message


def test_bad_regex_names_the_file_the_key_and_the_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, 'banned_usernames: ["admin", "(?<=x)y"]\n')
    message = refusal(path)
    assert message.startswith(f"{path}: banned_usernames: ")
    assert "'(?<=x)y'" in message


def test_match_everything_pattern_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'banned_usernames: ["a|"]\n')
    assert refusal(path).startswith(f"{path}: banned_usernames: pattern 'a|'")


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "banned_ip: ['203.0.113.7']\n")
    assert refusal(path) == f"{path}: banned_ip: unknown key; did you mean 'banned_ips'?"


def test_homeserver_only_keys_are_unknown_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "token_lifetime: 1h\n")
    assert refusal(path).startswith(f"{path}: token_lifetime: unknown key")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("banned_emails: ['nobody']\n", "banned_emails"),
        ("banned_ips: ['10.0.0.300']\n", "banned_ips"),
        ("allowed_email_domains: ['a..b']\n", "allowed_email_domains"),
        ("block_disposable_emails: maybe\n", "block_disposable_emails"),
        ("rate_limits: {per_ip: {burst: 0}}\n", "rate_limits.per_ip.burst"),
        ("rate_limits: {per_ip: {brust: 1}}\n", "rate_limits.per_ip.brust"),
        ("banned_usernames: [{match: x, expires: someday}]\n", "banned_usernames"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    assert refusal(path).startswith(f"{path}: {key}: ")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- admin\n- root\n")
    message = refusal(path)
    assert message.startswith(f"{path}: ")
    assert "mapping" in message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    assert refusal(path).startswith(f"{path}: cannot read")


# --- LivePolicy: a refused file leaves the previous policy in force ------------------


def test_refused_reload_keeps_the_previous_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "banned_usernames: ['^spam']\n")
    live = LivePolicy(lists({"banned_usernames": ["admin"]}), path, lambda: NOW)
    assert live.current.username_ban("spammer") == "^spam"
    assert live.current.username_ban("admin") == "admin"

    Path(path).write_text("banned_usernames: ['(?=lookahead)']\n")
    result = live.reload()
    assert not result.ok
    assert result.message.startswith(f"{path}: banned_usernames: ")
    assert live.current.username_ban("spammer") == "^spam"

    Path(path).write_text("banned_usernames: ['^ham']\n")
    assert live.reload().ok
    assert live.current.username_ban("spammer") is None
    assert live.current.username_ban("hamster") == "^ham"
    assert live.current.username_ban("admin") == "admin"  # homeserver.yaml's bans stay


def test_the_same_stored_bans_again_keep_the_compiled_policy(tmp_path: Path) -> None:
    """At start (and after every reload signal) the stored bans are read again; when
    they did not change the patterns are not compiled again beside those in force."""
    path = write(tmp_path, "banned_usernames: ['^spam']\n")
    live = LivePolicy(PolicyLists(), path, lambda: NOW)
    before = live.current
    live.set_stored(PolicyLists())
    assert live.current is before
    stored = lists({"banned_usernames": ["^eggs"]})
    live.set_stored(stored)
    assert live.current is not before
    assert live.current.username_ban("eggsy") == "^eggs"
    assert live.current.username_ban("spammer") == "^spam"
    now_in_force = live.current
    live.set_stored(lists({"banned_usernames": ["^eggs"]}))  # equal, not the same object
    assert live.current is now_in_force
    live.set_stored(PolicyLists())
    assert live.current.username_ban("eggsy") is None


def test_a_bad_policy_file_at_start_up_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "banned_ips: [nonsense]\n")
    with pytest.raises(ConfigError) as info:
        LivePolicy(PolicyLists(), path, lambda: NOW)
    assert info.value.msg.startswith(f"policy_file: {path}: banned_ips: ")


def test_a_changed_file_is_picked_up_by_check(tmp_path: Path) -> None:
    path = write(tmp_path, "banned_usernames: ['^one']\n")
    live = LivePolicy(PolicyLists(), path, lambda: NOW)
    Path(path).write_text(yaml.safe_dump({"banned_usernames": ["^two", "^three"]}))
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    # A change is applied once the file has stood still for one check: an editor
    # writing it in place may not be done yet.
    live.check()
    assert live.current.username_ban("oneness") == "^one"
    live.check()
    assert live.current.username_ban("twofold") == "^two"
    assert live.current.username_ban("oneness") is None


def test_ipv6_clients_share_one_rate_limit_per_64() -> None:
    from synapse_email_gate.requests.service import rate_limit_key

    assert rate_limit_key("2001:db8:1:2::1") == rate_limit_key("2001:db8:1:2:ffff::9")
    assert rate_limit_key("2001:db8:1:2::1") != rate_limit_key("2001:db8:1:3::1")
    assert rate_limit_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert rate_limit_key("203.0.113.7") == "203.0.113.7"
