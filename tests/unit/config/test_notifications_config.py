"""The `notifications` section: defaults, and a ConfigError naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate import EmailGate
from synapse_email_gate.config.notifications import NotificationsConfig


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        EmailGate.parse_config(raw)
    return str(info.value)


def test_off_by_default() -> None:
    config = EmailGate.parse_config({}).notifications
    assert config == NotificationsConfig()
    assert not config.channels and not config.wants("requests")
    assert config.digest_after == 5 and config.digest_interval_ms == 600_000


def test_a_full_section_parses() -> None:
    config = EmailGate.parse_config(
        {
            "moderation_room": "#mods:example.org",
            "notifications": {
                "emails": ["mods@example.org"],
                "room": True,
                "events": ["accounts"],
                "digest_after": 3,
                "digest_interval": "1m",
                "check_interval": "2s",
            },
        }
    ).notifications
    assert config.emails == ("mods@example.org",) and config.room
    assert config.wants("accounts") and not config.wants("requests")
    assert (config.digest_after, config.digest_interval_ms, config.check_interval_ms) == (
        3,
        60_000,
        2_000,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"room": True}, "notifications.room: needs moderation_room to be set"),
        ({"events": ["signups"]}, "notifications.events: 'signups' is not an event"),
        ({"emails": ["not an address"]}, "notifications.emails: 'not an address'"),
        ({"digest_after": 0}, "notifications.digest_after: must be at least 1"),
        ({"digest_interval": "1s"}, "notifications.digest_interval:"),
        ({"email": ["a@example.org"]}, "notifications.email: unknown key; did you mean 'emails'"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, Any], message: str) -> None:
    assert message in error({"notifications": section})
