"""Config of the moderators' notifications (`notifications:`, docs/configuration.md).

Mails to `emails` and/or messages in the `moderation_room` about new requests
and new accounts; batched into a digest once more than `digest_after` arrive in
one `digest_interval`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from synapse_email_gate.config.reader import Section, string_list

# What may be notified: a request assessed, an account made with one of our tokens.
EVENTS = ("requests", "accounts")


@attrs.frozen
class NotificationsConfig:
    emails: tuple[str, ...] = ()
    room: bool = False
    events: frozenset[str] = frozenset(EVENTS)
    digest_after: int = 5
    digest_interval_ms: int = 600_000
    check_interval_ms: int = 5_000

    @property
    def channels(self) -> bool:
        """Whether anything is to be notified at all."""
        return bool(self.emails) or self.room

    def wants(self, event: str) -> bool:
        return self.channels and event in self.events

    @staticmethod
    def from_section(
        section: Section, addresses: Callable[[object], tuple[str, ...]]
    ) -> NotificationsConfig:
        no_addresses: tuple[str, ...] = ()
        config = NotificationsConfig(
            emails=section.convert("emails", no_addresses, addresses),
            room=section.boolean("room", False),
            events=section.convert("events", frozenset(EVENTS), _events),
            digest_after=section.integer("digest_after", 5, minimum=1, maximum=1000),
            digest_interval_ms=section.duration_ms("digest_interval", 600_000, minimum_ms=10_000),
            check_interval_ms=section.duration_ms("check_interval", 5_000, minimum_ms=500),
        )
        section.finish()
        return config


def _events(value: object) -> frozenset[str]:
    entries = string_list(value)
    for entry in entries:
        if entry not in EVENTS:
            raise ValueError(f"{entry!r} is not an event; expected some of {', '.join(EVENTS)}")
    return frozenset(entries)
