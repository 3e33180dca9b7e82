"""When a channel sends each event or a digest, and what the messages say."""

from __future__ import annotations

import pytest

from synapse_email_gate.rules.notifications import (
    ACCOUNT,
    DIGEST_LINES,
    JOIN_FAILED,
    REQUEST,
    Event,
    compose,
    describe,
    plan,
)

MINUTE = 60_000


@pytest.mark.parametrize(
    ("pending", "sent", "last", "now", "expected"),
    [
        (0, 0, None, 0, "wait"),
        (1, 0, None, 0, "each"),
        (5, 0, None, 0, "each"),  # up to digest_after: one message each
        (3, 2, 100, 200, "each"),
        (6, 0, None, 0, "digest"),  # a burst: one digest at once
        (1, 5, 100, 200, "wait"),  # the budget is spent: wait for the interval
        (4, 5, 100, 100 + 10 * MINUTE, "digest"),  # an interval after the last message
    ],
)
def test_plan(pending: int, sent: int, last: int | None, now: int, expected: str) -> None:
    assert plan(pending, sent, last, now, digest_after=5, interval_ms=10 * MINUTE) == expected


def event(i: int, kind: str = REQUEST, email: str | None = "alice@example.org") -> Event:
    return Event(f"e{i}", 1_700_000_000_000 + i, kind, f"@u{i}:example.org", email, "token mailed")


def test_the_room_sees_a_masked_address_and_mail_the_clear_one() -> None:
    assert describe(event(1), mask=True) == (
        "New request for @u1:example.org (a•••@example.org): token mailed"
    )
    assert "(alice@example.org)" in describe(event(1), mask=False)
    assert "(" not in describe(event(1, email=None), mask=False)  # hashed: no address at all
    assert describe(event(2, ACCOUNT, None), mask=True).startswith("New account @u2:example.org")
    assert describe(event(3, JOIN_FAILED, None), mask=True).startswith("Auto-join failed for")


def test_one_event_is_its_own_message() -> None:
    message = compose([event(1)], "example.org", False, str)
    assert (
        message.subject
        == "[example.org] New request for @u1:example.org (alice@example.org): token mailed"
    )
    assert message.body == "New request for @u1:example.org (alice@example.org): token mailed\n"


def test_a_digest_counts_and_lists_its_events() -> None:
    events = [event(i) for i in range(DIGEST_LINES + 3)] + [event(99, ACCOUNT, None)]
    message = compose(events, "example.org", True, str)
    assert message.subject == "[example.org] Digest: 53 new requests, 1 new accounts"
    lines = message.body.splitlines()
    assert lines[0].startswith(f"Digest of {len(events)} events (53 new requests, 1 new accounts)")
    assert len([ln for ln in lines if ln.startswith("- ")]) == DIGEST_LINES
    assert lines[-1] == f"... and {len(events) - DIGEST_LINES} more"
    assert "alice@example.org" not in message.body
