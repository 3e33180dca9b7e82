"""What moderators are told about new requests and accounts, and when (pure).

Each channel (the notification mails, the moderation room) sends every event
in a message of its own while at most `digest_after` messages go out in one
`digest_interval`; beyond that it sends at most one message per interval, a
digest of every event waiting (docs/moderation.md, "Notifications").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from synapse_email_gate.rules.rooms import mask_email

# Event kinds, as stored.
REQUEST = "request"
ACCOUNT = "account"
JOIN_FAILED = "join_failed"
# A surge switch (moderation/surge.py): mailed; the room hears it from the switch itself.
SURGE = "surge"

# A digest lists this many events and counts the rest.
DIGEST_LINES = 50

Plan = Literal["each", "digest", "wait"]


@attrs.frozen
class Event:
    """One thing to tell moderators. `email` is the requester's address, absent when
    addresses are hashed; `detail` says what became of it (no secret, ever)."""

    event_id: str
    ts: int
    kind: str
    user_id: str
    email: str | None = None
    detail: str | None = None


def plan(
    pending: int,
    sent_in_window: int,
    last_sent_ts: int | None,
    now_ms: int,
    digest_after: int,
    interval_ms: int,
) -> Plan:
    """How one channel sends its `pending` events now: each in its own message, all
    in one digest, or not yet (one digest per interval once over `digest_after`)."""
    if pending <= 0:
        return "wait"
    if sent_in_window + pending <= digest_after:
        return "each"
    if last_sent_ts is None or now_ms - last_sent_ts >= interval_ms:
        return "digest"
    return "wait"


def describe(event: Event, mask: bool) -> str:
    """One line about an event; `mask` hides most of the address (the room)."""
    address = ""
    if event.email is not None:
        address = f" ({mask_email(event.email) if mask else event.email})"
    detail = f": {event.detail}" if event.detail else ""
    if event.kind == REQUEST:
        return f"New request for {event.user_id}{address}{detail}"
    if event.kind == ACCOUNT:
        return f"New account {event.user_id}{detail}"
    if event.kind == JOIN_FAILED:
        return f"Auto-join failed for {event.user_id}{detail}"
    if event.kind == SURGE:
        return f"Surge switch{detail}"
    return f"{event.kind} {event.user_id}{detail}"


@attrs.frozen
class Message:
    subject: str
    body: str


def compose(
    events: Sequence[Event], server_name: str, mask: bool, format_ts: Callable[[int], str]
) -> Message:
    """One message about `events`: the event itself, or a digest of them."""
    if len(events) == 1:
        line = describe(events[0], mask)
        return Message(f"[{server_name}] {line}", f"{line}\n")
    counts = _counts(events)
    subject = f"[{server_name}] Digest: {counts}"
    first, last = format_ts(events[0].ts), format_ts(events[-1].ts)
    lines = [f"Digest of {len(events)} events ({counts}), {first} to {last}:"]
    lines += [f"- {describe(event, mask)}" for event in events[:DIGEST_LINES]]
    if len(events) > DIGEST_LINES:
        lines.append(f"... and {len(events) - DIGEST_LINES} more")
    return Message(subject, "\n".join(lines) + "\n")


_NAMES = {
    REQUEST: "new requests",
    ACCOUNT: "new accounts",
    JOIN_FAILED: "failed auto-joins",
    SURGE: "surge switches",
}


def _counts(events: Sequence[Event]) -> str:
    counted: dict[str, int] = {}
    for event in events:
        counted[event.kind] = counted.get(event.kind, 0) + 1
    return ", ".join(f"{n} {_NAMES.get(kind, kind)}" for kind, n in counted.items())
