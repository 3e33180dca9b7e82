"""The module config, parsed without Synapse: defaults, valid forms, and errors.

Every bad value must stop start-up with a ConfigError whose message starts with
the dotted path of the key (`email_gate: smtp.port: ...`), as docs/configuration.md
promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from synapse.module_api.errors import ConfigError

from synapse_email_gate import EmailGate
from synapse_email_gate.config.gate import (
    ChallengeConfig,
    GateConfig,
    PrivacyConfig,
    RetentionConfig,
    SmtpConfig,
)
from synapse_email_gate.config.policy_lists import Bucket, RateLimits

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def parse(raw: dict[str, Any]) -> GateConfig:
    return EmailGate.parse_config(raw)


def config_error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return info.value


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "smtp-password"
    path.write_text("s3cret\n")
    return str(path)


# --- defaults --------------------------------------------------------------


def test_empty_config_takes_the_documented_defaults() -> None:
    config = parse({})
    assert config.smtp == SmtpConfig(
        host="localhost",
        port=25,
        tls="starttls",
        username=None,
        password=None,
        ca_file=None,
        verify_certificates=True,
        timeout_seconds=30.0,
    )
    assert config.sender is None
    assert config.token_lifetime_ms == 24 * HOUR
    assert config.email_cooldown_ms == HOUR
    assert config.multiple_users_per_email is False
    assert config.trusted_proxies == ()
    assert config.policy_file is None
    assert config.policy_check_interval_ms == 2 * SECOND
    assert config.challenge == ChallengeConfig(
        enabled=False, difficulty=22, lifetime_ms=10 * MINUTE
    )
    assert config.moderators == ()
    assert config.approval == "off"
    assert config.retention == RetentionConfig(unfinished_ms=7 * DAY, finished_ms=90 * DAY)
    assert config.mail_retry_for_ms == DAY
    assert config.mail_retry_initial_ms == 30 * SECOND
    assert config.mail_sweep_interval_ms == 10 * SECOND
    assert config.approval_reason_min_length == 30
    assert config.approval_notify_emails == ()
    assert config.moderation_room is None
    assert config.bot_localpart == "email-gate"
    assert config.privacy == PrivacyConfig(hash_emails=False, hash_secret=None)
    # Policy lists: empty, and unset scalars (the built policy fills them in).
    assert config.policy.banned_usernames == ()
    assert config.policy.banned_emails == ()
    assert config.policy.banned_ips == ()
    assert config.policy.allowed_email_domains == ()
    assert config.policy.block_disposable_emails is None
    assert config.policy.rate_limits is None


def test_no_config_at_all_is_the_same_as_an_empty_one() -> None:
    assert GateConfig.parse(None) == parse({})


def test_default_rate_limits_are_the_documented_numbers() -> None:
    limits = RateLimits()
    # One IP: 5 at once, then one every 12 minutes (5 an hour).
    assert limits.per_ip == Bucket(burst=5, per_second=5 / 3600)
    # One address: 2 at once, then one an hour.
    assert limits.per_email == Bucket(burst=2, per_second=1 / 3600)
    # The whole server: 100 at once, then one every 2 seconds.
    assert limits.global_ == Bucket(burst=100, per_second=0.5)


def test_the_contract_example_parses() -> None:
    raw = yaml.safe_load(
        """
        smtp: {host: 127.0.0.1, port: 2525, tls: none}
        sender: "Example <gate@example.org>"
        token_lifetime: 24h
        email_cooldown: 1h
        multiple_users_per_email: false
        banned_usernames: ["(?i)admin", "^root$"]
        banned_emails: ["spam@example.com", "*@mailinator.com"]
        banned_ips: ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]
        trusted_proxies: []
        rate_limits:
          per_ip: {burst: 5, per_second: 0.003}
          per_email: {burst: 1, per_second: 0.0003}
          global: {burst: 100, per_second: 0.5}
        challenge: {enabled: false}
        """
    )
    config = parse(raw)
    assert config.smtp.port == 2525
    assert config.policy.rate_limits == RateLimits(
        per_ip=Bucket(5, 0.003), per_email=Bucket(1, 0.0003), global_=Bucket(100, 0.5)
    )
    assert [e.match for e in config.policy.banned_ips] == raw["banned_ips"]


# --- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("45s", 45 * SECOND),
        ("15m", 15 * MINUTE),
        ("24h", 24 * HOUR),
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("500ms", 500),
        (" 90m ", 90 * MINUTE),
        ("600", 600 * SECOND),
        (3600, HOUR),
        (0, 0),
    ],
)
def test_duration_forms(value: object, ms: int) -> None:
    assert parse({"email_cooldown": value}).email_cooldown_ms == ms


# Every duration key, a value above its minimum, and one below it.
DURATION_KEYS = [
    ("token_lifetime", lambda c: c.token_lifetime_ms, "59s"),
    ("email_cooldown", lambda c: c.email_cooldown_ms, None),
    ("policy_check_interval", lambda c: c.policy_check_interval_ms, "999ms"),
    ("mail_retry_for", lambda c: c.mail_retry_for_ms, "30s"),
    ("challenge.lifetime", lambda c: c.challenge.lifetime_ms, "9s"),
    ("retention.unfinished", lambda c: c.retention.unfinished_ms, "59m"),
    ("retention.finished", lambda c: c.retention.finished_ms, "59m"),
]


def nested(path: str, value: object) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}"""
    raw: Any = value
    for part in reversed(path.split(".")):
        raw = {part: raw}
    result: dict[str, Any] = raw
    return result


@pytest.mark.parametrize(("key", "read", "too_short"), DURATION_KEYS)
def test_every_duration_key_takes_units_and_seconds(
    key: str, read: Any, too_short: str | None
) -> None:
    assert read(parse(nested(key, "7d"))) == 7 * DAY
    assert read(parse(nested(key, "2h"))) == 2 * HOUR
    assert read(parse(nested(key, 7200))) == 2 * HOUR


@pytest.mark.parametrize(("key", "read", "too_short"), DURATION_KEYS)
@pytest.mark.parametrize("bad", ["tomorrow", "1 hour", "1.5h", "-5m", -5, 1.5, True, [], "5x"])
def test_every_duration_key_refuses_what_is_not_a_duration(
    key: str, read: Any, too_short: str | None, bad: object
) -> None:
    assert config_error(nested(key, bad)).msg.startswith(f"email_gate: {key}: ")


@pytest.mark.parametrize(("key", "read", "too_short"), [k for k in DURATION_KEYS if k[2]])
def test_duration_keys_refuse_values_below_their_minimum(
    key: str, read: Any, too_short: str
) -> None:
    message = config_error(nested(key, too_short)).msg
    assert message.startswith(f"email_gate: {key}: must be at least")


# --- valid forms -------------------------------------------------------------


@pytest.mark.parametrize("tls", ["none", "starttls", "tls"])
def test_smtp_tls_modes(tls: str) -> None:
    assert parse({"smtp": {"tls": tls}}).smtp.tls == tls


def test_smtp_all_keys(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    smtp = parse(
        {
            "smtp": {
                "host": "mail.example.org",
                "port": 587,
                "tls": "starttls",
                "username": "gate",
                "password": "pw",
                "ca_file": str(ca_file),
                "verify_certificates": False,
                "timeout": 10,
            }
        }
    ).smtp
    assert smtp == SmtpConfig(
        host="mail.example.org",
        port=587,
        tls="starttls",
        username="gate",
        password="pw",
        ca_file=str(ca_file),
        verify_certificates=False,
        timeout_seconds=10.0,
    )


def test_smtp_password_file_is_read_and_stripped(secret_file: str) -> None:
    smtp = parse({"smtp": {"username": "gate", "password_file": secret_file}}).smtp
    assert smtp.password == "s3cret"


def test_smtp_password_is_not_in_the_repr() -> None:
    smtp = parse({"smtp": {"username": "gate", "password": "hunter2"}}).smtp
    assert "hunter2" not in repr(smtp)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.53", "::1"])
def test_smtp_login_without_tls_is_allowed_on_loopback(host: str) -> None:
    smtp = parse({"smtp": {"host": host, "tls": "none", "username": "u", "password": "p"}}).smtp
    assert smtp.username == "u"


@pytest.mark.parametrize("sender", ["Example <gate@example.org>", "gate@example.org"])
def test_sender_forms(sender: str) -> None:
    assert parse({"sender": sender}).sender == sender


def test_policy_lists_and_scalars() -> None:
    policy = parse(
        {
            "banned_usernames": ["(?i)admin", "^root$"],
            "banned_emails": ["spam@example.com", "*@mailinator.com", "/^bulk[0-9]+@/"],
            "banned_ips": ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"],
            "allowed_email_domains": ["example.org", "bücher.de"],
            "block_disposable_emails": False,
            "multiple_users_per_email": True,
        }
    ).policy
    assert [e.match for e in policy.banned_usernames] == ["(?i)admin", "^root$"]
    assert [e.match for e in policy.banned_emails] == [
        "spam@example.com",
        "*@mailinator.com",
        "/^bulk[0-9]+@/",
    ]
    assert policy.allowed_email_domains == ("example.org", "bücher.de")
    assert policy.block_disposable_emails is False


def test_ban_entries_may_carry_a_reason_and_an_expiry() -> None:
    raw = yaml.safe_load(
        """
        banned_usernames:
          - "^spam"
          - {match: "^scam", reason: "ticket 42", expires: "2026-12-31T00:00:00Z"}
        banned_emails:
          - {match: "*@example.net", reason: "bulk sign-ups"}
        banned_ips:
          - {match: "203.0.113.0/24", expires: 2026-12-31}
        """
    )
    policy = parse(raw).policy
    plain, detailed = policy.banned_usernames
    assert (plain.match, plain.reason, plain.expires_ts) == ("^spam", None, None)
    assert (detailed.match, detailed.reason) == ("^scam", "ticket 42")
    assert detailed.expires_ts == 1_798_675_200_000  # 2026-12-31T00:00:00Z
    assert policy.banned_emails[0].reason == "bulk sign-ups"
    assert policy.banned_ips[0].expires_ts == 1_798_675_200_000


def test_rate_limits_missing_values_take_the_defaults() -> None:
    limits = parse({"rate_limits": {"per_ip": {"burst": 10}}}).policy.rate_limits
    assert limits == RateLimits(per_ip=Bucket(burst=10, per_second=5 / 3600))


def test_rate_limit_per_second_may_be_an_integer_or_zero() -> None:
    limits = parse(
        {"rate_limits": {"global": {"burst": 1, "per_second": 1}, "per_ip": {"per_second": 0}}}
    ).policy.rate_limits
    assert limits is not None
    assert limits.global_ == Bucket(burst=1, per_second=1.0)
    assert limits.per_ip.per_second == 0.0


def test_other_keys() -> None:
    config = parse(
        {
            "trusted_proxies": ["10.0.0.1", "172.16.0.0/12", "::1"],
            "policy_file": "/etc/synapse/email_gate_policy.yaml",
            "challenge": {"enabled": True, "difficulty": 20},
            "moderators": ["@mod:example.org", r"@.*:staff\.example\.org"],
            "approval": "required",
        }
    )
    assert config.trusted_proxies == ("10.0.0.1", "172.16.0.0/12", "::1")
    assert config.policy_file == "/etc/synapse/email_gate_policy.yaml"
    assert config.challenge.enabled is True
    assert config.challenge.difficulty == 20
    assert config.moderators == ("@mod:example.org", r"@.*:staff\.example\.org")
    assert config.approval == "required"


def test_privacy_hash_secret_inline_or_from_a_file(tmp_path: Path) -> None:
    inline = parse({"privacy": {"hash_emails": True, "hash_secret": "0123456789abcdef"}})
    assert inline.privacy == PrivacyConfig(hash_emails=True, hash_secret="0123456789abcdef")
    secret = tmp_path / "hash_secret"
    secret.write_text("  a secret of more than sixteen characters\n")
    from_file = parse({"privacy": {"hash_emails": True, "hash_secret_file": str(secret)}})
    assert from_file.privacy.hash_secret == "a secret of more than sixteen characters"
    assert "sixteen" not in repr(from_file)


def test_challenge_approval_and_mail_keys() -> None:
    config = parse(
        {
            "challenge": {
                "enabled": True,
                "difficulty": 20,
                "lifetime": "5m",
                "secret": "0123456789abcdef",
                "adaptive": {"max_increase": 6, "threshold": 50, "window": "5m"},
            },
            "approval": "required",
            "approval_reason_min_length": 0,
            "approval_notify_emails": ["mods@example.org"],
            "moderation_room": "#signups:example.org",
            "bot_localpart": "gatekeeper",
            "mail_retry_initial": "1m",
            "mail_sweep_interval": "500ms",
        }
    )
    challenge = config.challenge
    assert (challenge.enabled, challenge.difficulty, challenge.lifetime_ms) == (
        True,
        20,
        5 * MINUTE,
    )
    assert (challenge.max_increase, challenge.busy_threshold) == (6, 50)
    assert challenge.busy_window_ms == 5 * MINUTE
    assert "0123456789abcdef" not in repr(challenge)
    assert config.approval == "required"
    assert config.approval_reason_min_length == 0
    assert config.approval_notify_emails == ("mods@example.org",)
    assert config.moderation_room == "#signups:example.org"
    assert config.bot_localpart == "gatekeeper"
    assert (config.mail_retry_initial_ms, config.mail_sweep_interval_ms) == (MINUTE, 500)


def test_challenge_adaptive_increase_stays_within_32_bits() -> None:
    assert parse({"challenge": {"difficulty": 30}}).challenge.max_increase == 2
    assert parse({}).challenge.max_increase == 3


def test_pages_keys() -> None:
    pages = parse(
        {
            "branding": {
                "display_name": "Example Chat",
                "logo_url": "/logo.png",
                "intro": {"en": "Hello", "de": "Hallo"},
                "rules_url": "https://example.org/rules",
            },
            "clients": [{"name": "FluffyChat", "url": "https://fluffychat.im/?hs={server_name}"}],
            "password": {"min_length": 12, "min_score": 0},
            "after_registration": {
                "join_rooms": ["#welcome:example.org", "!abc:example.org"],
                "welcome": {"sender": "@welcome:example.org", "message": "Welcome!"},
            },
            "web_registration": {"enabled": False, "client_api_url": "http://127.0.0.1:8008"},
            "default_language": "fr",
        }
    ).pages
    assert pages.branding.display_name == "Example Chat"
    assert pages.branding.intro == {"en": "Hello", "de": "Hallo"}
    assert pages.branding.consent_required is True  # a link is set
    assert [c.name for c in pages.clients] == ["FluffyChat"]
    assert (pages.password.min_length, pages.password.min_score) == (12, 0)
    assert pages.after_registration.join_rooms == ("#welcome:example.org", "!abc:example.org")
    assert pages.after_registration.welcome is not None
    assert pages.web_registration.enabled is False
    assert pages.web_registration.client_api_url == "http://127.0.0.1:8008/"
    assert pages.default_language == "fr"


def test_pages_defaults() -> None:
    pages = parse({}).pages
    assert pages.branding.display_name is None
    assert pages.branding.consent_required is False
    assert [c.name for c in pages.clients] == ["Element"]
    assert (pages.password.min_length, pages.password.min_score) == (10, 3)
    assert pages.after_registration.join_rooms == ()
    assert pages.after_registration.welcome is None
    assert pages.web_registration.enabled is True
    assert pages.default_language == "en"
    assert pages.translations_dir is None


def test_null_values_take_the_defaults() -> None:
    raw = {"smtp": {"port": None}, "token_lifetime": None, "banned_ips": None, "retention": None}
    assert parse(raw) == parse({})


# --- bad values: the key is named ----------------------------------------------

MISSING = "/nonexistent/email-gate/secret"

BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    # (config, key path, a further part of the message)
    ({"smtp": "localhost"}, "smtp", "expected a mapping"),
    ({"smtp": {"host": 25}}, "smtp.host", "expected a string"),
    ({"smtp": {"port": 70000}}, "smtp.port", "at most 65535"),
    ({"smtp": {"port": 0}}, "smtp.port", "at least 1"),
    ({"smtp": {"port": "25"}}, "smtp.port", "expected an integer"),
    ({"smtp": {"tls": "ssl"}}, "smtp.tls", "none, starttls, tls"),
    ({"smtp": {"tls": False}}, "smtp.tls", "none, starttls, tls"),
    ({"smtp": {"verify_certificates": "no"}}, "smtp.verify_certificates", "true or false"),
    ({"smtp": {"timeout": 0}}, "smtp.timeout", "at least"),
    ({"smtp": {"timeout": "30s"}}, "smtp.timeout", "expected a number"),
    ({"smtp": {"ca_file": MISSING}}, "smtp.ca_file", "cannot read"),
    ({"smtp": {"username": "gate"}}, "smtp.username", "password"),
    ({"smtp": {"password": "pw"}}, "smtp.password", "username"),
    ({"smtp": {"username": "gate", "password_file": MISSING}}, "smtp.password_file", MISSING),
    (
        {"smtp": {"host": "mail.example.org", "tls": "none", "username": "u", "password": "p"}},
        "smtp.username",
        "unencrypted",
    ),
    ({"sender": "nobody"}, "sender", "'nobody'"),
    ({"sender": "a@example.org, b@example.org"}, "sender", "one address"),
    ({"sender": "Gate <gate@example.org>\r\nBcc: x@example.org"}, "sender", "line breaks"),
    ({"sender": ["gate@example.org"]}, "sender", "address"),
    ({"multiple_users_per_email": "no"}, "multiple_users_per_email", "true or false"),
    ({"banned_usernames": "admin"}, "banned_usernames", "list"),
    ({"banned_usernames": [5]}, "banned_usernames", "item 0"),
    ({"banned_usernames": ["ok", "(?<=a)b"]}, "banned_usernames", "'(?<=a)b'"),
    ({"banned_usernames": ["(a)\\1"]}, "banned_usernames", "'(a)\\\\1'"),
    ({"banned_usernames": ["[unclosed"]}, "banned_usernames", "'[unclosed'"),
    ({"banned_usernames": [".*"]}, "banned_usernames", "'.*': matches every input"),
    ({"banned_usernames": ["|admin"]}, "banned_usernames", "'|admin': matches every input"),
    ({"banned_usernames": [{"match": "x", "reason": 5}]}, "banned_usernames", "reason"),
    ({"banned_usernames": [{"match": "x", "expires": "soon"}]}, "banned_usernames", "expires"),
    ({"banned_usernames": [{"match": "x", "expire": "2030-01-01"}]}, "banned_usernames", "expire"),
    ({"banned_usernames": [{"reason": "no match"}]}, "banned_usernames", "match"),
    ({"banned_emails": ["spammer"]}, "banned_emails", "'spammer'"),
    ({"banned_emails": ["*@"]}, "banned_emails", "'*@'"),
    ({"banned_emails": ["/(?<=a)b/"]}, "banned_emails", "'/(?<=a)b/'"),
    ({"banned_emails": [{"match": "not an address"}]}, "banned_emails", "'not an address'"),
    ({"banned_ips": ["300.1.1.1"]}, "banned_ips", "'300.1.1.1'"),
    ({"banned_ips": ["10.0.0.0/33"]}, "banned_ips", "'10.0.0.0/33'"),
    ({"banned_ips": ["example.org"]}, "banned_ips", "'example.org'"),
    ({"allowed_email_domains": ["a..b"]}, "allowed_email_domains", "'a..b'"),
    ({"allowed_email_domains": ["*.example.org"]}, "allowed_email_domains", "'*.example.org'"),
    ({"block_disposable_emails": "yes"}, "block_disposable_emails", "true or false"),
    ({"trusted_proxies": ["proxy.internal"]}, "trusted_proxies", "'proxy.internal'"),
    ({"trusted_proxies": "10.0.0.1"}, "trusted_proxies", "list"),
    ({"rate_limits": []}, "rate_limits", "expected a mapping"),
    ({"rate_limits": {"per_ip": 5}}, "rate_limits.per_ip", "expected a mapping"),
    ({"rate_limits": {"per_ip": {"burst": 0}}}, "rate_limits.per_ip.burst", "at least 1"),
    ({"rate_limits": {"per_ip": {"burst": 2.5}}}, "rate_limits.per_ip.burst", "integer"),
    ({"rate_limits": {"per_email": {"burst": "1"}}}, "rate_limits.per_email.burst", "integer"),
    (
        {"rate_limits": {"global": {"per_second": -1}}},
        "rate_limits.global.per_second",
        "at least",
    ),
    (
        {"rate_limits": {"per_ip": {"per_second": "fast"}}},
        "rate_limits.per_ip.per_second",
        "number",
    ),
    ({"policy_file": 5}, "policy_file", "string"),
    ({"challenge": {"enabled": "yes"}}, "challenge.enabled", "true or false"),
    ({"challenge": {"difficulty": 0}}, "challenge.difficulty", "at least 1"),
    ({"challenge": {"difficulty": 33}}, "challenge.difficulty", "at most 32"),
    ({"challenge": {"difficulty": "18"}}, "challenge.difficulty", "integer"),
    ({"moderators": "@mod:example.org"}, "moderators", "list"),
    ({"moderators": ["@mod:example.org", "[x"]}, "moderators", "'[x'"),
    ({"approval": "yes"}, "approval", "off, required"),
    ({"retention": "30d"}, "retention", "expected a mapping"),
    ({"privacy": {"hash_emails": "yes"}}, "privacy.hash_emails", "true or false"),
    ({"privacy": {"hash_emails": True}}, "privacy.hash_secret", "required"),
    ({"privacy": {"hash_secret": "short"}}, "privacy.hash_secret", "at least 16"),
    (
        {"privacy": {"hash_secret": "0123456789abcdef", "hash_secret_file": MISSING}},
        "privacy.hash_secret_file",
        "either",
    ),
    ({"privacy": {"hash_secret_file": MISSING}}, "privacy.hash_secret_file", "cannot read"),
    ({"privacy": {"hash_email": True}}, "privacy.hash_email", "did you mean 'hash_emails'"),
    ({"challenge": {"secret": "short"}}, "challenge.secret", "at least 16"),
    ({"challenge": {"secret_file": MISSING}}, "challenge.secret_file", "cannot read"),
    (
        {"challenge": {"secret": "0123456789abcdef", "secret_file": MISSING}},
        "challenge.secret_file",
        "either",
    ),
    (
        {"challenge": {"difficulty": 30, "adaptive": {"max_increase": 3}}},
        "challenge.adaptive.max_increase",
        "at most 2",
    ),
    ({"challenge": {"adaptive": {"threshold": 0}}}, "challenge.adaptive.threshold", "at least 1"),
    ({"challenge": {"adaptive": {"window": "5s"}}}, "challenge.adaptive.window", "at least 10s"),
    ({"approval_reason_min_length": 2001}, "approval_reason_min_length", "at most 2000"),
    ({"approval_notify_emails": ["mods"]}, "approval_notify_emails", "'mods'"),
    ({"approval_notify_emails": "mods@example.org"}, "approval_notify_emails", "list"),
    ({"moderation_room": "mods"}, "moderation_room", "'mods'"),
    # One room rule for every key: the server name is a host name (and port), as in
    # after_registration.join_rooms.
    ({"moderation_room": "#mods:example.org/x"}, "moderation_room", "'#mods:example.org/x'"),
    (
        {"smtp": {"username": "gate", "password": "pw", "password_file": MISSING}},
        "smtp.password_file",
        "either password or password_file, not both",
    ),
    ({"bot_localpart": "Email Gate"}, "bot_localpart", "'Email Gate'"),
    ({"policy_rooms": "#bans:example.org"}, "policy_rooms", "list"),
    ({"policy_rooms": ["#bans:example.org", "bans"]}, "policy_rooms", "item 1"),
    ({"policy_rooms": ["!abc:example.org", "!abc:example.org"]}, "policy_rooms", "twice"),
    ({"policy_rooms": ["@user:example.org"]}, "policy_rooms", "room alias"),
    ({"mail_retry_initial": "2d"}, "mail_retry_initial", "mail_retry_for"),
    ({"mail_sweep_interval": "100ms"}, "mail_sweep_interval", "at least 500ms"),
    ({"branding": {"logo_url": "https://cdn.example/l.png"}}, "branding.logo_url", "path"),
    ({"branding": {"display_name": "two\nlines"}}, "branding.display_name", "one line"),
    ({"branding": {"rules_url": "javascript:alert(1)"}}, "branding.rules_url", "URL"),
    ({"branding": {"consent_required": True}}, "branding.consent_required", "rules_url"),
    ({"branding": {"intro": {"english": "hi"}}}, "branding.intro", "'english'"),
    ({"clients": [{"name": "X", "url": "javascript:alert(1)"}]}, "clients", "item 0"),
    ({"clients": [{"name": "X", "url": "https://x/{token}"}]}, "clients", "token"),
    ({"clients": [{"name": "X"}]}, "clients", "item 0"),
    ({"password": {"min_length": 0}}, "password.min_length", "at least 1"),
    ({"password": {"min_score": 5}}, "password.min_score", "at most 4"),
    ({"after_registration": {"join_rooms": ["lobby"]}}, "after_registration.join_rooms", "lobby"),
    (
        {"after_registration": {"welcome": {"message": "Hi!"}}},
        "after_registration.welcome.sender",
        "required",
    ),
    (
        {"after_registration": {"welcome": {"sender": "@w:example.org"}}},
        "after_registration.welcome.message",
        "required",
    ),
    ({"web_registration": {"client_api_url": "ftp://x"}}, "web_registration.client_api_url", "URL"),
    ({"web_registration": {"enabled": "yes"}}, "web_registration.enabled", "true or false"),
    ({"translations_dir": MISSING}, "translations_dir", "not a directory"),
    ({"default_language": "english"}, "default_language", "'english'"),
    ({"default_language": "xx"}, "default_language", "xx"),
]


@pytest.mark.parametrize(("raw", "key", "detail"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_value_names_the_key(raw: dict[str, Any], key: str, detail: str) -> None:
    message = config_error(raw).msg
    assert message.startswith(f"email_gate: {key}: "), message
    assert detail in message


def test_bad_value_error_carries_the_path() -> None:
    error = config_error({"rate_limits": {"per_ip": {"burst": 0}}})
    assert list(error.path or []) == ["rate_limits", "per_ip", "burst"]


def test_password_and_password_file_together_are_refused(secret_file: str) -> None:
    raw = {"smtp": {"username": "u", "password": "p", "password_file": secret_file}}
    assert config_error(raw).msg.startswith("email_gate: smtp.password_file: ")


def test_unreadable_password_file_is_refused(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root.
    message = config_error({"smtp": {"username": "u", "password_file": str(tmp_path)}}).msg
    assert message.startswith("email_gate: smtp.password_file: cannot read")
    assert repr(str(tmp_path)) in message


def test_a_password_file_counts_as_a_password_for_the_plaintext_check(secret_file: str) -> None:
    raw = {
        "smtp": {"host": "192.0.2.1", "tls": "none", "username": "u", "password_file": secret_file}
    }
    assert config_error(raw).msg.startswith("email_gate: smtp.username: ")


# --- unknown keys --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key", "suggestion"),
    [
        ({"token_lifetme": "24h"}, "token_lifetme", "token_lifetime"),
        ({"banned_username": []}, "banned_username", "banned_usernames"),
        ({"smtp": {"hots": "mail"}}, "smtp.hots", "host"),
        ({"smtp": {"pasword": "x"}}, "smtp.pasword", "password"),
        ({"rate_limits": {"per_ipp": {}}}, "rate_limits.per_ipp", "per_ip"),
        ({"rate_limits": {"per_ip": {"brust": 5}}}, "rate_limits.per_ip.brust", "burst"),
        ({"challenge": {"enable": True}}, "challenge.enable", "enabled"),
        ({"retention": {"finshed": "30d"}}, "retention.finshed", "finished"),
    ],
)
def test_unknown_key_suggests_the_closest(raw: dict[str, Any], key: str, suggestion: str) -> None:
    message = config_error(raw).msg
    assert message == f"email_gate: {key}: unknown key; did you mean {suggestion!r}?"


def test_unknown_key_without_a_close_match_has_no_suggestion() -> None:
    assert config_error({"xyzzy": 1}).msg == "email_gate: xyzzy: unknown key"


def test_the_command_prefix_is_one_word() -> None:
    assert GateConfig.parse({}).command_prefix == "!gate"
    assert GateConfig.parse({"command_prefix": "!reg"}).command_prefix == "!reg"
    for bad in ("", "two words", "x" * 33, 5):
        error = config_error({"command_prefix": bad})
        assert error.msg.startswith("email_gate: command_prefix: expected one word"), error


def test_policy_rooms_take_aliases_and_room_ids_of_every_room_version() -> None:
    rooms = ["#community-bans:example.org", "!abc:example.org", "!" + "A1-_b" * 9]
    assert GateConfig.parse({"policy_rooms": rooms}).policy_rooms == tuple(rooms)
    assert GateConfig.parse({}).policy_rooms == ()
