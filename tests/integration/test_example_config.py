"""homeserver.example.yaml (and docs/policy.example.yaml) load: parsed by the module,
and run by a real Synapse."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_email_gate import EmailGate
from synapse_email_gate.policy.live import read_policy_file
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import REPO_ROOT
from tests.integration.helpers import ask, token_from

EXAMPLE = REPO_ROOT / "homeserver.example.yaml"
EXAMPLE_POLICY = REPO_ROOT / "docs" / "policy.example.yaml"
CONFIGURATION_DOC = REPO_ROOT / "docs" / "configuration.md"


def example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def module_config() -> dict[str, Any]:
    (module,) = example()["modules"]
    assert module["module"] == "synapse_email_gate.EmailGate"
    config: dict[str, Any] = copy.deepcopy(module["config"])
    return config


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "smtp_password"
    path.write_text("example-password\n")
    return str(path)


def test_the_homeserver_settings_are_there() -> None:
    hs = example()
    assert hs["enable_registration"] is True
    assert hs["registration_requires_token"] is True
    assert hs["public_baseurl"].startswith("https://")


def test_the_module_config_parses(password_file: str) -> None:
    config = module_config()
    config["smtp"]["password_file"] = password_file
    config["policy_file"] = str(EXAMPLE_POLICY)
    parsed = EmailGate.parse_config(config)
    assert parsed.smtp.password == "example-password"
    assert parsed.smtp.tls == "starttls"
    assert parsed.policy_file == str(EXAMPLE_POLICY)


def test_the_example_shows_the_defaults_where_it_says_so(password_file: str) -> None:
    config = module_config()
    config["smtp"]["password_file"] = password_file
    shown = EmailGate.parse_config(config)
    defaults = EmailGate.parse_config({})
    for name in (
        "token_lifetime_ms",
        "email_cooldown_ms",
        "multiple_users_per_email",
        "policy_check_interval_ms",
        "challenge",
        "approval",
        "retention",
        "mail_retry_for_ms",
        "mail_retry_initial_ms",
        "mail_sweep_interval_ms",
        "approval_reason_min_length",
        "bot_localpart",
        "dns",
        "dnsbl",
        "mail_domain_check",
    ):
        assert getattr(shown, name) == getattr(defaults, name), name
    assert shown.smtp.timeout_seconds == defaults.smtp.timeout_seconds
    assert shown.smtp.verify_certificates == defaults.smtp.verify_certificates
    limits = shown.policy.rate_limits
    assert limits is not None
    for bucket, default in [
        (limits.per_ip, 5 / 3600),
        (limits.per_email, 1 / 3600),
        (limits.global_, 0.5),
    ]:
        assert bucket.per_second == pytest.approx(default, rel=1e-3)


def leaf_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values that are not mappings: `rate_limits.per_ip.burst`."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        keys += leaf_keys(value, path + ".") if isinstance(value, dict) else [path]
    return keys


def test_every_key_of_the_example_is_documented() -> None:
    doc = CONFIGURATION_DOC.read_text()
    for key in leaf_keys(module_config()):
        assert f"`{key}`" in doc, key


def test_the_example_policy_file_is_valid() -> None:
    lists = read_policy_file(str(EXAMPLE_POLICY))
    assert lists.banned_usernames
    assert any(entry.reason for entry in lists.banned_emails)


def test_synapse_runs_with_the_example(
    make_synapse: Any, smtp: SmtpCatcher, tmp_path: Path
) -> None:
    config = module_config()
    # The example mails through a real relay with a password; here: the test catcher.
    config["smtp"] = {**config["smtp"], "host": smtp.host, "port": smtp.port, "tls": "none"}
    for key in ("username", "password", "password_file"):
        config["smtp"].pop(key, None)
    policy_file = tmp_path / "email_gate_policy.yaml"
    policy_file.write_text(EXAMPLE_POLICY.read_text())
    config["policy_file"] = str(policy_file)
    # The consent box belongs to the form; this test asks through the API.
    config["branding"]["consent_required"] = False
    # The example's moderators are users of example.org, and must be (a moderator
    # entry naming another server stops Synapse at start-up).
    synapse = make_synapse(config, raw=True, server_name="example.org")

    page = http.get(synapse.gate_url)
    assert page.status == 200, page
    assert 'name="username"' in page.text
    assert 'name="email"' in page.text

    smtp.clear()
    answer = ask(synapse, "carol", "carol@example.org")
    assert answer.status == 202, answer
    mail = smtp.wait_for(lambda m: m.to == "carol@example.org")
    assert "@carol:example.org" in mail.text
    assert token_from(mail)

    # A ban from homeserver.yaml and one from the policy file both apply.
    assert ask(synapse, "siteadmin", "dave@example.org").status == 400
    assert ask(synapse, "postmaster", "erin@example.org").status == 400
