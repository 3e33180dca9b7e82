"""Plain-text ban lists named by the policy file: parsing, validation naming the
file and line, merging with the inline lists, and reloads when a list file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.list_files import parse_lines, strip_comment
from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.config.reader import Section
from synapse_email_gate.policy.live import LivePolicy, read_policy_file
from synapse_email_gate.rules.addresses import parse_email

NOW = 1_800_000_000_000


def touch_later(path: Path) -> None:
    """Move the file's mtime on, as a later write would."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("admin", "admin"),
        ("# a comment", ""),
        ("   # indented comment", ""),
        ("^root$  # the superuser", "^root$  "),
        ("203.0.113.7\t# office", "203.0.113.7\t"),
        ("a#b", "a#b"),  # no space before: part of the entry
        ("", ""),
    ],
)
def test_comments_start_a_line_or_follow_a_space(line: str, kept: str) -> None:
    assert strip_comment(line) == kept


def test_blank_lines_and_comments_are_skipped_and_lines_keep_their_numbers() -> None:
    text = "# header\n\nadmin\n   \n  ^root$   # superuser\r\nspam.*\n"
    assert [(line.number, line.entry) for line in parse_lines(text)] == [
        (3, "admin"),
        (5, "^root$"),
        (6, "spam.*"),
    ]


def write_policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_list_files_are_merged_with_the_inline_lists(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text("# bad names\n^spam\nscam  # scams\n")
    lists_dir = tmp_path / "lists"
    lists_dir.mkdir()
    (lists_dir / "emails.txt").write_text("*@mailinator.com\nbad@example.org\n")
    (lists_dir / "more-emails.txt").write_text("/^x{3}@/\n")
    (tmp_path / "ips.txt").write_text("203.0.113.7\n198.51.100.0/24\n2001:db8::/32\n")
    path = write_policy(
        tmp_path,
        "banned_usernames: ['^inline$']\n"
        "banned_usernames_file: users.txt\n"
        "banned_emails_file: [lists/emails.txt, lists/more-emails.txt]\n"
        f"banned_ips_file: {tmp_path / 'ips.txt'}\n",
    )
    lists = read_policy_file(path)
    assert [e.match for e in lists.banned_usernames] == ["^inline$", "^spam", "scam"]
    assert [e.match for e in lists.banned_emails] == [
        "*@mailinator.com",
        "bad@example.org",
        "/^x{3}@/",
    ]
    assert [e.match for e in lists.banned_ips] == [
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::/32",
    ]
    assert lists.list_files == (
        str(tmp_path / "users.txt"),
        str(lists_dir / "emails.txt"),
        str(lists_dir / "more-emails.txt"),
        str(tmp_path / "ips.txt"),
    )
    live = LivePolicy(PolicyLists(), path, lambda: NOW)
    policy = live.current
    assert policy.username_ban("spammer") == "^spam"
    assert policy.username_ban("inline") == "^inline$"
    assert policy.email_ban(parse_email("someone@mailinator.com")) == "*@mailinator.com"
    assert policy.email_ban(parse_email("xxx@example.net")) == "/^x{3}@/"
    assert policy.ip_ban("198.51.100.9") == "198.51.100.0/24"
    assert policy.ip_ban("2001:db8::1") == "2001:db8::/32"
    assert policy.ip_ban("192.0.2.1") is None


@pytest.mark.parametrize(
    ("key", "content", "line", "problem"),
    [
        ("banned_usernames_file", "ok\n# c\n(a)\\1\n", 3, "pattern '(a)\\\\1'"),
        ("banned_usernames_file", "ok\n\n.*\n", 3, "matches every input"),
        ("banned_emails_file", "a@example.org\nnot an address\n", 2, "entry 'not an address'"),
        ("banned_ips_file", "203.0.113.7\n\n\n300.1.2.3\n", 4, "entry '300.1.2.3'"),
    ],
)
def test_a_bad_entry_names_the_file_and_the_line(
    tmp_path: Path, key: str, content: str, line: int, problem: str
) -> None:
    (tmp_path / "list.txt").write_text(content)
    path = write_policy(tmp_path, f"{key}: list.txt\n")
    with pytest.raises(ValueError) as info:
        read_policy_file(path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'list.txt'}:{line}: "), message
    assert problem in message


def test_a_missing_list_file_is_named(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "banned_ips_file: nowhere.txt\n")
    with pytest.raises(ValueError, match=r"nowhere\.txt: cannot read"):
        read_policy_file(path)


@pytest.mark.parametrize("value", ["[]", "[3]", "{a: b}", "''"])
def test_a_bad_file_key_is_named(tmp_path: Path, value: str) -> None:
    path = write_policy(tmp_path, f"banned_usernames_file: {value}\n")
    with pytest.raises(ValueError, match=f"^{path}: banned_usernames_file: "):
        read_policy_file(path)


def test_list_files_are_refused_in_homeserver_yaml() -> None:
    section = Section({"banned_ips_file": "/etc/ips.txt"}, "")
    with pytest.raises(ConfigError, match=r"^banned_ips_file: list files can be named"):
        PolicyLists.from_section(section)


def test_a_bad_list_file_keeps_the_previous_policy_and_a_fix_is_picked_up(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("^one\n")
    path = write_policy(tmp_path, "banned_usernames_file: users.txt\n")
    live = LivePolicy(PolicyLists(), path, lambda: NOW)
    assert live.current.username_ban("oneness") == "^one"

    # A change to the list file alone is seen by the periodic check.
    users.write_text("^two\n")
    touch_later(users)
    live.check()  # the change must stand still for one check
    assert live.current.username_ban("oneness") == "^one"
    assert live.check()
    assert live.current.username_ban("twofold") == "^two"
    assert live.current.username_ban("oneness") is None

    users.write_text("^two\n(?<=x)y\n")
    touch_later(users)
    live.check()
    assert not live.check()
    assert live.current.username_ban("twofold") == "^two"  # previous policy stays
    result = live.reload()
    assert not result.ok
    assert result.message.startswith(f"{users}:2: pattern '(?<=x)y': ")

    users.write_text("^three\n")
    touch_later(users)
    live.check()
    assert live.check()
    assert live.current.username_ban("threesome") == "^three"


def test_a_list_file_named_by_a_failed_reload_is_watched(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "banned_usernames: ['^one']\n")
    live = LivePolicy(PolicyLists(), path, lambda: NOW)
    Path(path).write_text("banned_ips_file: ips.txt\n")
    touch_later(Path(path))
    live.check()
    assert not live.check()  # ips.txt does not exist yet
    assert live.current.username_ban("oneness") == "^one"

    (tmp_path / "ips.txt").write_text("203.0.113.7\n")
    live.check()
    assert live.check()
    assert live.current.ip_ban("203.0.113.7") == "203.0.113.7"
    assert live.current.username_ban("oneness") is None


def test_check_config_reads_the_list_files_a_policy_file_names(tmp_path: Path) -> None:
    from synapse_email_gate.cli.check import check_policy_file

    (tmp_path / "ips.txt").write_text("203.0.113.7\nnot-an-ip\n")
    path = write_policy(tmp_path, "banned_ips_file: ips.txt\nbanned_usernames: ['^x']\n")
    report = check_policy_file(path)
    assert [p.line() for p in report.problems] == [
        f"{path}: {tmp_path / 'ips.txt'}:2: entry 'not-an-ip': not an IP address or CIDR "
        "network (like 203.0.113.7, 198.51.100.0/24 or 2001:db8::/32)"
    ]
    (tmp_path / "ips.txt").write_text("203.0.113.7\n")
    assert check_policy_file(path).problems == []
    # Other problems of the policy file itself are still listed key by key.
    Path(path).write_text("banned_ips_file: ips.txt\nbanned_usernames: ['(a)\\1']\nextra: 1\n")
    keys = [p.key for p in check_policy_file(path).problems]
    assert keys == ["banned_usernames", "extra"]
