"""Plain-text ban lists named by `policy_file`: in force with the inline lists,
reloaded when a list file changes (no reload call needed) and on admin/reload, a bad
line refused naming the file and line with the previous policy kept; on a real
Synapse, SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, ask_from, expect_no_mail, reload_policy, wait_until

CHECK_INTERVAL_S = 1.0
USERS = "# usernames banned on the old page\n^listban\n\nscam  # scams\n"
EMAILS = "*@listbanned.example\n"
IPS = "203.0.113.80\n2001:db8:80::/48\n"


@pytest.fixture(scope="module")
def lists_dir(tmp_path_factory: pytest.TempPathFactory, synapse_db: str) -> Path:
    directory = tmp_path_factory.mktemp(f"lists-{synapse_db}")
    (directory / "lists").mkdir()
    replace(directory / "policy.yaml", policy_text())
    return directory


def policy_text() -> str:
    return yaml.safe_dump(
        {
            "banned_usernames": ["^inlineban$"],
            "banned_usernames_file": "lists/usernames.txt",
            "banned_emails_file": ["lists/emails.txt"],
            "banned_ips_file": "lists/ips.txt",
        }
    )


@pytest.fixture(scope="module")
def gate_config(lists_dir: Path) -> dict[str, Any]:
    write_lists(lists_dir)
    return {
        "policy_file": str(lists_dir / "policy.yaml"),
        "policy_check_interval": f"{int(CHECK_INTERVAL_S)}s",
        "trusted_proxies": ["127.0.0.1"],
        "banned_usernames_starter": True,
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def write_lists(directory: Path) -> None:
    replace(directory / "lists" / "usernames.txt", USERS)
    replace(directory / "lists" / "emails.txt", EMAILS)
    replace(directory / "lists" / "ips.txt", IPS)


@pytest.fixture(autouse=True)
def original_lists(synapse: SynapseServer, lists_dir: Path, admin_token: str) -> Iterator[None]:
    yield
    replace(lists_dir / "policy.yaml", policy_text())
    write_lists(lists_dir)
    assert reload_policy(synapse, admin_token).status == 200


def replace(path: Path, text: str) -> None:
    aside = path.with_name(path.name + ".new")
    aside.write_text(text)
    os.replace(aside, path)


def banned(synapse: SynapseServer, name: str) -> bool:
    answer = ask(synapse, name, "not-an-address")
    assert answer.status == 400, answer
    errcode = answer.json()["errcode"]
    assert errcode in ("EMAIL_GATE_USERNAME_BANNED", "EMAIL_GATE_INVALID_EMAIL"), answer
    return bool(errcode == "EMAIL_GATE_USERNAME_BANNED")


def test_every_kind_of_list_file_is_in_force_with_the_inline_lists(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    assert banned(synapse, "listban1")
    assert banned(synapse, "scammer")
    assert banned(synapse, "inlineban")
    assert not banned(synapse, "ordinary")
    assert ask_from(synapse, "listip", "listip@example.org", "203.0.113.80").status == 403
    assert ask_from(synapse, "listip", "listip@example.org", "2001:db8:80::9").status == 403
    answer = ask_from(synapse, "listmail", "someone@listbanned.example", "198.51.100.80")
    assert answer.status == 202
    expect_no_mail(
        synapse, mailbox, "listmail", "someone@listbanned.example", reason="email_banned"
    )


def test_the_starter_list_shipped_with_the_package_is_in_force(synapse: SynapseServer) -> None:
    assert banned(synapse, "hitler")
    assert banned(synapse, "metamask-support")
    assert not banned(synapse, "scunthorpe")
    assert not banned(synapse, "therapist")


def test_a_changed_list_file_is_in_force_within_seconds_without_a_reload(
    synapse: SynapseServer, lists_dir: Path
) -> None:
    assert not banned(synapse, "freshban1")
    replace(lists_dir / "lists" / "usernames.txt", "^freshban\n")
    wait_until(lambda: banned(synapse, "freshban1"), "freshban1 banned", CHECK_INTERVAL_S + 5)
    assert not banned(synapse, "listban1")  # the file's entries were replaced
    assert banned(synapse, "inlineban")  # the policy file's own stay


def test_a_bad_line_is_refused_naming_the_file_and_line_and_the_old_policy_stays(
    synapse: SynapseServer, lists_dir: Path, admin_token: str
) -> None:
    ips = lists_dir / "lists" / "ips.txt"
    replace(ips, "# office\n203.0.113.81\n\nnot-an-ip\n")
    answer = reload_policy(synapse, admin_token)
    assert answer.status == 400, answer
    body = answer.json()
    assert body["errcode"] == "EMAIL_GATE_POLICY_INVALID"
    assert f"{ips}:4: " in body["error"], body
    assert "not-an-ip" in body["error"], body
    # The previous lists stay in force, the new good line did not sneak in.
    assert ask_from(synapse, "keptip", "keptip@example.org", "203.0.113.80").status == 403
    assert ask_from(synapse, "newip", "newip@example.org", "203.0.113.81").status == 202
    assert banned(synapse, "listban1")

    # Fixing the file is picked up by the periodic check, no reload needed.
    replace(ips, "203.0.113.81\n")

    def fixed() -> bool:
        return ask_from(synapse, "fixedip", "fixedip@example.org", "203.0.113.81").status == 403

    wait_until(fixed, "the fixed ips.txt in force", CHECK_INTERVAL_S + 5)


def test_a_list_file_newly_named_is_read_on_reload(
    synapse: SynapseServer, lists_dir: Path, admin_token: str
) -> None:
    replace(lists_dir / "lists" / "more.txt", "^addedlater\n")
    replace(
        lists_dir / "policy.yaml",
        yaml.safe_dump({"banned_usernames_file": ["lists/usernames.txt", "lists/more.txt"]}),
    )
    answer = reload_policy(synapse, admin_token)
    assert answer.status == 200, answer
    assert banned(synapse, "addedlater")
    assert banned(synapse, "listban1")
    assert not banned(synapse, "inlineban")
