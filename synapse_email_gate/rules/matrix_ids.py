"""What Matrix identifiers look like, as far as the module checks them: user
localparts, user IDs, room IDs and aliases (the spec's grammar for the user's
part; a server name of letters, digits, `.`, `-`, a port and IPv6 brackets).
"""

from __future__ import annotations

import re

_LOCALPART = r"[a-z0-9._=\-/+]+"
_SERVER_NAME = r"[A-Za-z0-9.\-:\[\]]+"
_LOCALPART_RE = re.compile(rf"^{_LOCALPART}$")
_USER_ID_RE = re.compile(rf"^@{_LOCALPART}:{_SERVER_NAME}$")
_ROOM_RE = re.compile(rf"^[!#][^:\s]+:{_SERVER_NAME}$")


def is_localpart(text: str) -> bool:
    """`email-gate`: the part of a user ID before the server name."""
    return bool(_LOCALPART_RE.match(text))


def is_user_id(text: str) -> bool:
    """`@alice:example.org`, of any server."""
    return bool(_USER_ID_RE.match(text))


def is_room(text: str) -> bool:
    """A room ID (`!abc:example.org`) or alias (`#mods:example.org`)."""
    return bool(_ROOM_RE.match(text))
