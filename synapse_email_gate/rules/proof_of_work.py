"""Proof-of-work challenges: issue and verify. Pure: no I/O, no Synapse.

A challenge is one ASCII string of five dot-separated fields::

    v1.<id>.<expires_ms>.<bits>.<mac>

- ``id``: 16 random bytes, base64url without padding (22 characters);
- ``expires_ms``: when it stops being accepted, in ms since the Unix epoch;
- ``bits``: the difficulty, 1-32;
- ``mac``: HMAC-SHA256 under the server's challenge key of ``v1.<id>.<expires_ms>.<bits>``,
  base64url without padding (43 characters).

A solution is a ``nonce`` (1-64 characters of ``A-Z a-z 0-9 _ -``) such that
SHA-256 of the UTF-8 bytes of ``<challenge>:<nonce>`` starts with at least
``bits`` zero bits. Finding one takes 2**bits hashes on average; checking it
takes one. docs/challenge.md describes the protocol for script authors.

`verify` does the cheap checks only (format, MAC in constant time, expiry,
difficulty, the one hash); that each id is used once is the caller's business
(a table of used ids, see requests/challenge_gate.py), and so is the difficulty in force
(`AdaptiveDifficulty.minimum`): a challenge signed with fewer bits than that is
refused as too easy, however well it was solved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

import attrs

VERSION = "v1"
MAX_DIFFICULTY = 32
MAX_NONCE_LENGTH = 64
# v1 + id + 15-digit expiry + 2-digit bits + mac + dots, with room to spare.
MAX_CHALLENGE_LENGTH = 128

# Error codes (400), documented in docs/challenge.md.
REQUIRED = "EMAIL_GATE_CHALLENGE_REQUIRED"
INVALID = "EMAIL_GATE_CHALLENGE_INVALID"
EXPIRED = "EMAIL_GATE_CHALLENGE_EXPIRED"
REPLAYED = "EMAIL_GATE_CHALLENGE_REPLAYED"
TOO_EASY = "EMAIL_GATE_CHALLENGE_TOO_EASY"

# How many steps below the difficulty in force a challenge may be: a visitor
# who fetched one just before a rise is not refused; a stockpile of easy ones
# stops working at the second rise.
GRACE_STEPS = 1

_KEY_LABEL = b"synapse_email_gate challenge key v1"
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_DIGITS = re.compile(r"[0-9]{1,15}")
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # MAX_NONCE_LENGTH


@attrs.frozen
class Issued:
    challenge: str
    id: str
    expires_ms: int
    difficulty: int


@attrs.frozen
class Solved:
    """A valid solution; the caller still has to make sure `id` is used only once."""

    id: str
    expires_ms: int
    difficulty: int


@attrs.frozen
class Rejected:
    errcode: str
    message: str


def derive_key(secret: str | bytes) -> bytes:
    """The MAC key, derived from a configured or stored secret (kept apart from other uses)."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())


def issue(
    key: bytes, now_ms: int, lifetime_ms: int, difficulty: int, challenge_id: str | None = None
) -> Issued:
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1-{MAX_DIFFICULTY}, got {difficulty}")
    challenge_id = challenge_id or _b64(secrets.token_bytes(16))
    expires_ms = now_ms + lifetime_ms
    signed = f"{VERSION}.{challenge_id}.{expires_ms}.{difficulty}"
    return Issued(f"{signed}.{_mac(key, signed)}", challenge_id, expires_ms, difficulty)


def required() -> Rejected:
    return Rejected(
        REQUIRED,
        "This request needs a solved anti-spam challenge (fields 'challenge' and 'nonce'). "
        "In a browser, JavaScript must be on.",
    )


def too_easy(bits: int, minimum: int) -> Rejected:
    return Rejected(
        TOO_EASY,
        f"The anti-spam check is harder now than when this challenge was handed out "
        f"({bits} bits; at least {minimum} are needed). Please try again with a new challenge.",
    )


def _invalid() -> Rejected:
    return Rejected(INVALID, "The anti-spam challenge is not valid. Please try again.")


def verify(
    key: bytes, challenge: str, nonce: str, now_ms: int, min_difficulty: int = 1
) -> Solved | Rejected:
    """Check a solution: format, MAC (constant time), expiry, difficulty, then one hash."""
    if len(challenge) > MAX_CHALLENGE_LENGTH:
        return _invalid()
    parts = challenge.split(".")
    if len(parts) != 5:
        return _invalid()
    version, challenge_id, expires, bits, mac = parts
    if (
        version != VERSION
        or not _ID.fullmatch(challenge_id)
        or not _DIGITS.fullmatch(expires)
        or not _DIGITS.fullmatch(bits)
        or not _MAC.fullmatch(mac)
    ):
        return _invalid()
    expected = _mac(key, challenge[: -len(mac) - 1])
    if not hmac.compare_digest(expected, mac):
        return _invalid()
    expires_ms, difficulty = int(expires), int(bits)
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        return _invalid()
    if expires_ms <= now_ms:
        return Rejected(EXPIRED, "The anti-spam challenge expired. Please try again.")
    if difficulty < min_difficulty:
        return too_easy(difficulty, min_difficulty)
    if not _NONCE.fullmatch(nonce):
        return Rejected(INVALID, "The anti-spam challenge was not solved. Please try again.")
    if not meets_difficulty(hash_solution(challenge, nonce), difficulty):
        return Rejected(INVALID, "The anti-spam challenge was not solved. Please try again.")
    return Solved(challenge_id, expires_ms, difficulty)


def hash_solution(challenge: str, nonce: str) -> bytes:
    return hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()


def meets_difficulty(digest: bytes, bits: int) -> bool:
    """Whether `digest` starts with at least `bits` (<= 64) zero bits."""
    return int.from_bytes(digest[:8], "big") >> (64 - bits) == 0


def solve(challenge: str, difficulty: int, start: int = 0) -> str:
    """A reference solver (tests, benchmarks, docs): counts up in decimal from `start`."""
    nonce = start
    while not meets_difficulty(hash_solution(challenge, str(nonce)), difficulty):
        nonce += 1
    return str(nonce)


class AdaptiveDifficulty:
    """Difficulty that follows the request rate, one step per window.

    Every `window_ms` (at most) the caller reports how many challenges were
    solved in the last window, by every process together. Above `threshold`
    the difficulty rises one bit (up to `maximum`); at or below half of it,
    it falls one bit per calm window since the last report (down to `base`).
    In between it stays, so it does not flap around the threshold.
    """

    def __init__(self, base: int, maximum: int, threshold: int, window_ms: int) -> None:
        self.base = base
        self.maximum = max(base, maximum)
        self.threshold = threshold
        self.window_ms = window_ms
        self.level = 0
        self.checked_ms: int | None = None

    @property
    def current(self) -> int:
        return self.base + self.level

    @property
    def minimum(self) -> int:
        """The fewest bits a challenge may have to be accepted now."""
        return max(self.base, self.current - GRACE_STEPS)

    @property
    def adaptive(self) -> bool:
        return self.maximum > self.base

    def due(self, now_ms: int) -> bool:
        return self.adaptive and (
            self.checked_ms is None or now_ms - self.checked_ms >= self.window_ms
        )

    def observe(self, now_ms: int, solved_in_window: int) -> int:
        windows = 1
        if self.checked_ms is not None:
            windows = max(1, (now_ms - self.checked_ms) // self.window_ms)
        if solved_in_window > self.threshold:
            self.level = min(self.level + 1, self.maximum - self.base)
        elif solved_in_window * 2 <= self.threshold:
            self.level = max(self.level - windows, 0)
        self.checked_ms = now_ms
        return self.current
