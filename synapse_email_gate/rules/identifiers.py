"""Random identifiers, from `secrets`.

The bytes are drawn from `secrets` a few kilobytes at a time and each byte is
used once: `os.urandom` releases the GIL, and on a busy Synapse process every
release lets another thread in, so an accepted request (an id, a token, ...)
paid a thread switch per identifier. A forked child starts with an empty pool,
so two processes never hold the same bytes.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading

# No look-alike characters (0/O, 1/l/I): people copy tokens by hand. 32 symbols,
# 24 of them: 120 bits. Registration tokens allow [A-Za-z0-9._~-], so this fits.
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
TOKEN_LENGTH = 24
_POOL_SIZE = 4096


class _RandomPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        if count > _POOL_SIZE:
            return secrets.token_bytes(count)
        with self._lock:
            if self._at + count > len(self._bytes):
                self._bytes = secrets.token_bytes(_POOL_SIZE)
                self._at = 0
            start = self._at
            self._at += count
            return self._bytes[start : self._at]

    def forget(self) -> None:
        """In a forked child: nothing the parent held, and a lock no thread holds."""
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_bytes(count: int) -> bytes:
    """`count` bytes from `secrets`, none ever handed out twice."""
    return _POOL.take(count)


def new_token(length: int = TOKEN_LENGTH) -> str:
    # Random bytes cut into 5-bit symbols: as uniform as a choice per symbol.
    value = int.from_bytes(random_bytes((5 * length + 7) // 8), "big")
    return "".join(_TOKEN_ALPHABET[(value >> (5 * i)) & 31] for i in range(length))


def new_id() -> str:
    """An opaque row id: 96 random bits, URL-safe, never beginning with '-'.

    Moderators pass ids to `synapse-email-gate requests approve ID`, where a
    leading '-' would look like an option.
    """
    while True:
        candidate = base64.urlsafe_b64encode(random_bytes(12)).decode("ascii")
        if not candidate.startswith("-"):
            return candidate
