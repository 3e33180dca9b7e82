"""Random identifiers, from `secrets`."""

from __future__ import annotations

import secrets

# No look-alike characters (0/O, 1/l/I): people copy tokens by hand. 32 symbols,
# 24 of them: 120 bits. Registration tokens allow [A-Za-z0-9._~-], so this fits.
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
TOKEN_LENGTH = 24


def new_token(length: int = TOKEN_LENGTH) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def new_id() -> str:
    """An opaque row id: 96 random bits, URL-safe."""
    return secrets.token_urlsafe(12)
