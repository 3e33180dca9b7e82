"""The module's configuration: frozen attrs classes read from homeserver.yaml.

Every value is checked here, at start-up, so that a bad value stops Synapse with
a ConfigError naming the key (`smtp.port: must be at most 65535, got 70000`).
See docs/configuration.md for every key and its default.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal, cast

import attrs
from synapse.config import ConfigError  # not the module API's: see config/reader.py

from synapse_email_gate.config.dns import DnsblConfig, DnsConfig, MailDomainConfig
from synapse_email_gate.config.notifications import NotificationsConfig
from synapse_email_gate.config.pages import PagesConfig
from synapse_email_gate.config.policy_lists import PolicyLists, RateLimits
from synapse_email_gate.config.probation import ProbationConfig
from synapse_email_gate.config.reader import Section, localpart, room, string_list
from synapse_email_gate.config.surge import SurgeConfig
from synapse_email_gate.rules.addresses import InvalidEmail, parse_email
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.moderator_entries import entry_problem, syntax_problem

TlsMode = Literal["none", "starttls", "tls"]
ApprovalMode = Literal["off", "required"]

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS


@attrs.frozen
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca_file: str | None = None
    verify_certificates: bool = True
    timeout_seconds: float = 30.0

    @staticmethod
    def from_section(section: Section) -> SmtpConfig:
        username = section.optional_string("username")
        password = section.secret("password")
        if username is not None and password is None:
            raise section.error("username", "needs password or password_file as well")
        if password is not None and username is None:
            raise section.error("password", "needs username as well")
        ca_file = section.optional_string("ca_file")
        if ca_file is not None:
            section.read_file("ca_file", ca_file)
        host = section.string("host", "localhost")
        tls = cast(TlsMode, section.choice("tls", "starttls", ("none", "starttls", "tls")))
        if username is not None and tls == "none" and not _is_loopback(host):
            raise section.error(
                "username", "would send the password unencrypted; set tls: starttls or tls"
            )
        config = SmtpConfig(
            host=host,
            port=section.integer("port", 25, minimum=1, maximum=65535),
            tls=tls,
            username=username,
            password=password,
            ca_file=ca_file,
            verify_certificates=section.boolean("verify_certificates", True),
            timeout_seconds=section.number("timeout", 30.0, minimum=1.0),
        )
        section.finish()
        return config


@attrs.frozen
class ChallengeConfig:
    """Proof-of-work on the request page and API (docs/challenge.md)."""

    enabled: bool = False
    difficulty: int = 22
    lifetime_ms: int = 10 * _MINUTE_MS
    # The MAC secret shared by every process; None: one is made and kept in the database.
    secret: str | None = attrs.field(default=None, repr=False)
    # Adaptive difficulty: up to `max_increase` bits more while more than
    # `busy_threshold` challenges are solved per `busy_window_ms`.
    max_increase: int = 3
    busy_threshold: int = 20
    busy_window_ms: int = _MINUTE_MS

    @staticmethod
    def from_section(section: Section) -> ChallengeConfig:
        difficulty = section.integer("difficulty", 22, minimum=1, maximum=32)
        secret = section.secret("secret")
        _long_enough(section, "secret", secret)
        adaptive = section.section("adaptive")
        config = ChallengeConfig(
            enabled=section.boolean("enabled", False),
            difficulty=difficulty,
            lifetime_ms=section.duration_ms("lifetime", 10 * _MINUTE_MS, minimum_ms=10_000),
            secret=secret,
            max_increase=adaptive.integer(
                "max_increase", min(3, 32 - difficulty), minimum=0, maximum=32 - difficulty
            ),
            busy_threshold=adaptive.integer("threshold", 20, minimum=1),
            busy_window_ms=adaptive.duration_ms("window", _MINUTE_MS, minimum_ms=10_000),
        )
        adaptive.finish()
        section.finish()
        return config


@attrs.frozen
class RetentionConfig:
    """How long request rows are kept: unfinished (no account) and finished ones."""

    unfinished_ms: int = 7 * _DAY_MS
    finished_ms: int = 90 * _DAY_MS
    purge_interval_ms: int = _HOUR_MS

    @staticmethod
    def from_section(section: Section) -> RetentionConfig:
        config = RetentionConfig(
            unfinished_ms=section.duration_ms("unfinished", 7 * _DAY_MS, minimum_ms=_HOUR_MS),
            finished_ms=section.duration_ms("finished", 90 * _DAY_MS, minimum_ms=_HOUR_MS),
            purge_interval_ms=section.duration_ms("purge_interval", _HOUR_MS, minimum_ms=1000),
        )
        section.finish()
        return config


@attrs.frozen
class PrivacyConfig:
    """`hash_emails`: keep only a keyed hash of each address once its mail is out."""

    hash_emails: bool = False
    hash_secret: str | None = attrs.field(default=None, repr=False)

    @staticmethod
    def from_section(section: Section) -> PrivacyConfig:
        hash_emails = section.boolean("hash_emails", False)
        secret = section.secret("hash_secret")
        if hash_emails and not secret:
            raise section.error("hash_secret", "required when hash_emails is true")
        _long_enough(section, "hash_secret", secret)
        section.finish()
        return PrivacyConfig(hash_emails=hash_emails, hash_secret=secret)


@attrs.frozen
class GateConfig:
    smtp: SmtpConfig = SmtpConfig()
    sender: str | None = None
    token_lifetime_ms: int = 24 * _HOUR_MS
    email_cooldown_ms: int = _HOUR_MS
    multiple_users_per_email: bool = False
    policy: PolicyLists = PolicyLists()
    trusted_proxies: tuple[str, ...] = ()
    policy_file: str | None = None
    policy_check_interval_ms: int = 2_000
    challenge: ChallengeConfig = ChallengeConfig()
    moderators: tuple[str, ...] = ()
    approval: ApprovalMode = "off"
    approval_reason_min_length: int = 30
    approval_notify_emails: tuple[str, ...] = ()
    moderation_room: str | None = None
    bot_localpart: str = "email-gate"
    command_prefix: str = "!gate"
    policy_rooms: tuple[str, ...] = ()
    retention: RetentionConfig = RetentionConfig()
    mail_retry_for_ms: int = _DAY_MS
    mail_retry_initial_ms: int = 30_000
    mail_sweep_interval_ms: int = 10_000
    privacy: PrivacyConfig = PrivacyConfig()
    # branding, clients, password, after_registration, web_registration, translations
    pages: PagesConfig = PagesConfig()
    dns: DnsConfig = DnsConfig()
    dnsbl: DnsblConfig = DnsblConfig()
    mail_domain_check: MailDomainConfig = MailDomainConfig()
    probation: ProbationConfig = ProbationConfig()
    surge: SurgeConfig = SurgeConfig()
    notifications: NotificationsConfig = NotificationsConfig()

    @staticmethod
    def parse(raw: Mapping[str, Any] | None) -> GateConfig:
        section = Section(raw, "")
        config = GateConfig(
            smtp=SmtpConfig.from_section(section.section("smtp")),
            sender=section.convert("sender", None, _sender),
            token_lifetime_ms=section.duration_ms("token_lifetime", 24 * _HOUR_MS, _MINUTE_MS),
            email_cooldown_ms=section.duration_ms("email_cooldown", _HOUR_MS),
            multiple_users_per_email=section.boolean("multiple_users_per_email", False),
            policy=PolicyLists.from_section(section),
            trusted_proxies=_trusted_proxies(section),
            policy_file=section.optional_string("policy_file"),
            policy_check_interval_ms=section.duration_ms(
                "policy_check_interval", 2_000, minimum_ms=1_000
            ),
            challenge=ChallengeConfig.from_section(section.section("challenge")),
            moderators=section.convert("moderators", (), _moderators),
            approval=cast(ApprovalMode, section.choice("approval", "off", ("off", "required"))),
            approval_reason_min_length=section.integer(
                "approval_reason_min_length", 30, minimum=0, maximum=2000
            ),
            approval_notify_emails=section.convert("approval_notify_emails", (), _addresses),
            moderation_room=section.convert("moderation_room", None, room),
            bot_localpart=section.convert("bot_localpart", "email-gate", localpart),
            command_prefix=section.convert("command_prefix", "!gate", _command_prefix),
            policy_rooms=section.convert("policy_rooms", (), _policy_rooms),
            retention=RetentionConfig.from_section(section.section("retention")),
            mail_retry_for_ms=section.duration_ms("mail_retry_for", _DAY_MS, _MINUTE_MS),
            mail_retry_initial_ms=section.duration_ms("mail_retry_initial", 30_000, 1_000),
            mail_sweep_interval_ms=section.duration_ms("mail_sweep_interval", 10_000, 500),
            privacy=PrivacyConfig.from_section(section.section("privacy")),
            pages=PagesConfig.from_section(section),
            dns=DnsConfig.from_section(section.section("dns")),
            dnsbl=DnsblConfig.from_section(section.section("dnsbl")),
            mail_domain_check=MailDomainConfig.from_section(section.section("mail_domain_check")),
            probation=ProbationConfig.from_section(section.section("probation")),
            surge=SurgeConfig.from_section(section.section("surge")),
            notifications=NotificationsConfig.from_section(
                section.section("notifications"), _addresses
            ),
        )
        if config.notifications.room and config.moderation_room is None:
            raise section.error("notifications.room", "needs moderation_room to be set")
        if config.mail_retry_initial_ms > config.mail_retry_for_ms:
            raise section.error("mail_retry_initial", "must not be longer than mail_retry_for")
        config = attrs.evolve(config, surge=_range_prefixes(section, config))
        section.finish()
        return config


def _range_prefixes(section: Section, config: GateConfig) -> SurgeConfig:
    """A surge range is at least as wide as a network of the rate limits: a range
    prefix written narrower is refused, a default one widened to the network."""
    limits = config.policy.rate_limits or RateLimits()
    written = section.raw("surge")
    surge = config.surge
    for family in ("ipv4", "ipv6"):
        key = f"range_{family}_prefix"
        network = getattr(limits, f"{family}_network_prefix")
        if getattr(surge, key) <= network:
            continue
        if isinstance(written, Mapping) and written.get(key) is not None:
            raise section.error(
                f"surge.{key}",
                f"must be at most rate_limits.{family}_network_prefix ({network}):"
                " a range is at least as wide as a network",
            )
        surge = attrs.evolve(surge, **{key: network})
    return surge


# Room version 12 room IDs have no server part: `!` and a hash in unpadded url-safe base64.
_SERVERLESS_ROOM_ID = re.compile(r"^![A-Za-z0-9_\-]{20,}$")


def _policy_rooms(value: object) -> tuple[str, ...]:
    entries = string_list(value)
    for index, entry in enumerate(entries):
        try:
            room(entry)
        except ValueError:
            if not _SERVERLESS_ROOM_ID.match(entry):
                raise ValueError(
                    f"item {index}: expected a room alias (#bans:example.org) or room ID"
                    f" (!abc:example.org), got {entry!r}"
                ) from None
        if entries.index(entry) != index:
            raise ValueError(f"item {index}: {entry!r} is listed twice")
    return entries


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _long_enough(section: Section, key: str, secret: str | None) -> None:
    """A MAC or hash key: long enough not to be guessed."""
    if secret is not None and len(secret) < 16:
        raise section.error(key, "must be at least 16 characters long")


def _sender(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected an address like 'Example <gate@example.org>', got {value!r}")
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain line breaks")
    pairs = email.utils.getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise ValueError(f"expected one address like 'Example <gate@example.org>', got {value!r}")
    return _quoted_sender(*pairs[0])


def _quoted_sender(name: str, address: str) -> str:
    """Quote a display name with dots, commas, ...: `Dr. X <a@b.org>` -> `"Dr. X" <a@b.org>`.
    Unquoted, the mail's From header would be refused when each mail is built."""
    if not name:
        return address
    if re.search(r'[][\\()<>@,:;".]', name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    return f"{name} <{address}>"


def _command_prefix(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^\s]{1,32}", value):
        raise ValueError(f"expected one word of 1 to 32 characters like !gate, got {value!r}")
    return value


def _addresses(value: object) -> tuple[str, ...]:
    entries = string_list(value)
    for entry in entries:
        try:
            parse_email(entry)
        except InvalidEmail as e:
            raise ValueError(f"{entry!r} is not a usable address: {e.message}") from e
    return entries


def _trusted_proxies(section: Section) -> tuple[str, ...]:
    entries = section.strings("trusted_proxies")
    try:
        IpRules.compile(entries)
    except ValueError as e:
        raise section.error("trusted_proxies", str(e)) from e
    return entries


def _moderators(value: object) -> tuple[str, ...]:
    entries = string_list(value)
    for index, entry in enumerate(entries):
        problem = syntax_problem(entry)
        if problem is not None:
            raise ValueError(f"item {index}: {problem}")
    return entries


def check_moderators(entries: tuple[str, ...], server_name: str) -> None:
    """At start-up, once the server name is known: every entry names only local
    users (see rules/moderator_entries.py). ConfigError naming the key and the entry."""
    for index, entry in enumerate(entries):
        problem = entry_problem(entry, server_name)
        if problem is not None:
            raise ConfigError(f"moderators: item {index}: {problem}", path=["moderators"])
