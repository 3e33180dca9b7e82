"""The one copy of what Matrix user IDs, localparts and rooms look like."""

from __future__ import annotations

import pytest

from synapse_email_gate.rules.matrix_ids import is_localpart, is_room, is_user_id


@pytest.mark.parametrize(
    ("text", "user_id"),
    [
        ("@alice:example.org", True),
        ("@a.b_c=d-e/f+g:matrix.example.org:8448", True),
        ("@bob:[2001:db8::1]", True),
        ("@Alice:example.org", False),  # localparts are lower case
        ("alice:example.org", False),
        ("@alice", False),
        ("@alice:exa mple.org", False),
    ],
)
def test_user_ids(text: str, user_id: bool) -> None:
    assert is_user_id(text) is user_id


@pytest.mark.parametrize(
    ("text", "room"),
    [
        ("#mods:example.org", True),
        ("!AbC123:example.org:8448", True),
        ("mods", False),
        ("#mods", False),
        ("@mods:example.org", False),
        ("#mods:example.org/x", False),
        ("#my mods:example.org", False),
    ],
)
def test_rooms(text: str, room: bool) -> None:
    assert is_room(text) is room


def test_localparts() -> None:
    assert is_localpart("email-gate")
    assert not is_localpart("Email Gate")
    assert not is_localpart("")
