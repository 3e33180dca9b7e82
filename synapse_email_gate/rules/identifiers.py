"""Random identifiers, from `secrets`."""

from __future__ import annotations

import secrets

# No look-alike characters (0/O, 1/l/I): people copy tokens by hand. 32 symbols,
# 24 of them: 120 bits. Registration tokens allow [A-Za-z0-9._~-], so this fits.
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
TOKEN_LENGTH = 24


def new_token(length: int = TOKEN_LENGTH) -> str:
    # One read of random bytes, cut into 5-bit symbols: as uniform as a choice per
    # symbol, and one system call instead of one per symbol.
    value = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8), "big")
    return "".join(_TOKEN_ALPHABET[(value >> (5 * i)) & 31] for i in range(length))


def new_id() -> str:
    """An opaque row id: 96 random bits, URL-safe, never beginning with '-'.

    Moderators pass ids to `synapse-email-gate requests approve ID`, where a
    leading '-' would look like an option.
    """
    while True:
        candidate = secrets.token_urlsafe(12)
        if not candidate.startswith("-"):
            return candidate
