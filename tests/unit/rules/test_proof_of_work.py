"""Proof-of-work challenges (rules/proof_of_work.py): the format, issue and verify,
the MAC, and the adaptive difficulty."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest

from synapse_email_gate.rules import proof_of_work
from synapse_email_gate.rules.proof_of_work import AdaptiveDifficulty, Rejected, Solved

KEY = proof_of_work.derive_key("a server secret of some length")
NOW = 1_700_000_000_000
LIFETIME = 600_000
BITS = 8


def issued(bits: int = BITS, now: int = NOW, key: bytes = KEY) -> proof_of_work.Issued:
    return proof_of_work.issue(key, now, LIFETIME, bits)


def solved(bits: int = BITS) -> tuple[str, str]:
    c = issued(bits).challenge
    return c, proof_of_work.solve(c, bits)


def errcode(result: Solved | Rejected) -> str:
    assert isinstance(result, Rejected), result
    return result.errcode


def unsolving_nonce(c: str, bits: int) -> str:
    n = 0
    while proof_of_work.meets_difficulty(proof_of_work.hash_solution(c, str(n)), bits):
        n += 1
    return str(n)


# --- the format -------------------------------------------------------------


def test_a_challenge_has_five_fields_and_a_mac_over_the_first_four() -> None:
    i = issued()
    version, cid, expires, bits, mac = i.challenge.split(".")
    assert (version, cid, int(expires), int(bits)) == ("v1", i.id, NOW + LIFETIME, BITS)
    assert len(cid) == 22 and len(mac) == 43
    signed = i.challenge.rsplit(".", 1)[0].encode()
    expected = hmac.new(KEY, signed, hashlib.sha256).digest()
    assert proof_of_work._b64(expected) == mac


def test_ids_are_random() -> None:
    assert len({issued().id for _ in range(100)}) == 100


def test_the_documented_algorithm_is_what_verify_checks() -> None:
    """SHA-256 of '<challenge>:<nonce>' starts with `bits` zero bits."""
    c, nonce = solved(12)
    digest = hashlib.sha256(f"{c}:{nonce}".encode()).digest()
    assert int.from_bytes(digest, "big") >> (256 - 12) == 0
    assert isinstance(proof_of_work.verify(KEY, c, nonce, NOW), Solved)


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 16, 17, 24, 31, 32])
def test_meets_difficulty_counts_leading_zero_bits(bits: int) -> None:
    value = 1 << (256 - bits - 1)  # exactly `bits` leading zeros
    digest = value.to_bytes(32, "big")
    assert proof_of_work.meets_difficulty(digest, bits)
    assert not proof_of_work.meets_difficulty(digest, bits + 1)


def test_difficulty_out_of_range_is_not_issued() -> None:
    for bits in (0, 33):
        with pytest.raises(ValueError):
            proof_of_work.issue(KEY, NOW, LIFETIME, bits)


# --- verify -----------------------------------------------------------------


def test_a_correct_solution_is_accepted_until_expiry() -> None:
    c, nonce = solved()
    result = proof_of_work.verify(KEY, c, nonce, NOW + LIFETIME - 1)
    assert isinstance(result, Solved)
    assert result.expires_ms == NOW + LIFETIME
    assert result.difficulty == BITS


def test_an_expired_challenge_is_refused() -> None:
    c, nonce = solved()
    assert errcode(proof_of_work.verify(KEY, c, nonce, NOW + LIFETIME)) == proof_of_work.EXPIRED
    assert (
        errcode(proof_of_work.verify(KEY, c, nonce, NOW + 10 * LIFETIME)) == proof_of_work.EXPIRED
    )


def test_a_nonce_that_does_not_meet_the_difficulty_is_refused() -> None:
    c = issued(16).challenge
    assert (
        errcode(proof_of_work.verify(KEY, c, unsolving_nonce(c, 16), NOW)) == proof_of_work.INVALID
    )


@pytest.mark.parametrize("nonce", ["", "x" * 65, "12 3", "1.2", "ü", "1:2", "../"])
def test_malformed_nonces_are_refused(nonce: str) -> None:
    c = issued(1).challenge
    assert errcode(proof_of_work.verify(KEY, c, nonce, NOW)) == proof_of_work.INVALID


def test_a_solution_under_another_secret_is_refused() -> None:
    other = proof_of_work.derive_key("another secret, also long enough")
    c = proof_of_work.issue(other, NOW, LIFETIME, BITS).challenge
    nonce = proof_of_work.solve(c, BITS)
    assert isinstance(proof_of_work.verify(other, c, nonce, NOW), Solved)
    assert errcode(proof_of_work.verify(KEY, c, nonce, NOW)) == proof_of_work.INVALID


def _tamper(c: str, index: int, value: str) -> str:
    parts = c.split(".")
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    ("index", "change"),
    [
        (0, lambda v: "v2"),
        (1, lambda v: ("B" if v[0] != "B" else "C") + v[1:]),
        (2, lambda v: str(int(v) + 3_600_000)),  # a later expiry
        (3, lambda v: "1"),  # an easier difficulty
        (4, lambda v: ("A" if v[0] != "A" else "B") + v[1:]),
    ],
    ids=["version", "id", "expires", "difficulty", "mac"],
)
def test_tampering_with_any_field_is_refused(index: int, change: Callable[[str], str]) -> None:
    c = issued().challenge
    forged = _tamper(c, index, change(c.split(".")[index]))
    assert forged != c
    # Solve the forged challenge honestly at its (possibly lowered) difficulty.
    bits = int(forged.split(".")[3]) if forged.split(".")[3].isdigit() else BITS
    nonce = proof_of_work.solve(forged, max(1, min(bits, 16)))
    assert errcode(proof_of_work.verify(KEY, forged, nonce, NOW)) == proof_of_work.INVALID


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "v1",
        "v1.a.b.c.d",
        "v1....",
        "v1.AAAAAAAAAAAAAAAAAAAAAA.1.8.AAAA",
        "v1.AAAAAAAAAAAAAAAAAAAAAA.-1.8." + "A" * 43,
        "v1.AAAAAAAAAAAAAAAAAAAAAA.1e9.8." + "A" * 43,
        "v1.AAAAAAAAAAAAAAAAAAAAAA.99.8." + "A" * 43 + ".extra",
        "v1." + "A" * 200,
        "\uff561.AAAAAAAAAAAAAAAAAAAAAA.99.8." + "A" * 43,  # a fullwidth v
        "v1.AAAAAAAAAAAAAAAAAAAAAA.٩٩.8." + "A" * 43,  # non-ASCII digits
    ],
)
def test_garbage_is_refused_as_invalid(garbage: str) -> None:
    assert errcode(proof_of_work.verify(KEY, garbage, "1", NOW)) == proof_of_work.INVALID


def test_a_challenge_easier_than_the_minimum_is_refused_as_too_easy() -> None:
    """After the configured difficulty was raised, old easy challenges no longer pass."""
    c, nonce = solved(4)
    assert isinstance(proof_of_work.verify(KEY, c, nonce, NOW, min_difficulty=4), Solved)
    refused = proof_of_work.verify(KEY, c, nonce, NOW, min_difficulty=5)
    assert errcode(refused) == proof_of_work.TOO_EASY
    assert isinstance(refused, Rejected)
    assert "harder now" in refused.message and "4 bits" in refused.message
    assert "at least 5" in refused.message


def test_a_forged_easy_challenge_is_invalid_not_too_easy() -> None:
    """The bits are only believed under a valid MAC."""
    c, nonce = solved(4)
    forged = _tamper(c, 3, "9")
    assert errcode(proof_of_work.verify(KEY, forged, nonce, NOW, min_difficulty=5)) == (
        proof_of_work.INVALID
    )


def test_the_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    c, nonce = solved()
    assert isinstance(proof_of_work.verify(KEY, c, nonce, NOW), Solved)
    assert len(calls) == 1 and calls[0][1] == c.rsplit(".", 1)[1]
    forged = _tamper(c, 4, "B" * 43)
    assert errcode(proof_of_work.verify(KEY, forged, nonce, NOW)) == proof_of_work.INVALID
    assert len(calls) == 2


def test_no_hash_is_computed_before_the_mac_checks_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged challenge costs one HMAC, never the solution hash."""
    hashed: list[str] = []
    real = proof_of_work.hash_solution
    monkeypatch.setattr(proof_of_work, "hash_solution", lambda c, n: hashed.append(n) or real(c, n))
    c = issued().challenge
    proof_of_work.verify(KEY, _tamper(c, 3, "1"), "1", NOW)
    assert hashed == []
    proof_of_work.verify(KEY, c, "1", NOW)
    assert hashed == ["1"]


def test_derive_key_separates_the_challenge_key_from_the_raw_secret() -> None:
    secret = "the very same secret"
    assert proof_of_work.derive_key(secret) == proof_of_work.derive_key(secret.encode())
    assert proof_of_work.derive_key(secret) != secret.encode()
    assert len(proof_of_work.derive_key(secret)) == 32


# --- adaptive difficulty ----------------------------------------------------

WINDOW = 60_000


def test_difficulty_rises_one_bit_per_busy_window_up_to_the_maximum() -> None:
    a = AdaptiveDifficulty(base=16, maximum=19, threshold=10, window_ms=WINDOW)
    assert a.due(NOW)
    seen = [a.observe(NOW + k * WINDOW, 50) for k in range(5)]
    assert seen == [17, 18, 19, 19, 19]


def test_difficulty_falls_back_when_calm_and_holds_in_between() -> None:
    a = AdaptiveDifficulty(base=16, maximum=20, threshold=10, window_ms=WINDOW)
    for k in range(4):
        a.observe(NOW + k * WINDOW, 11)
    assert a.current == 20
    assert a.observe(NOW + 4 * WINDOW, 8) == 20  # between half and the threshold: hold
    assert a.observe(NOW + 5 * WINDOW, 5) == 19  # half or less: one bit down
    assert a.observe(NOW + 6 * WINDOW, 0) == 18
    # Nobody asked for three windows and the last one was calm: three bits down.
    assert a.observe(NOW + 9 * WINDOW, 0) == 16
    assert a.observe(NOW + 10 * WINDOW, 0) == 16


def test_observations_are_due_once_per_window() -> None:
    a = AdaptiveDifficulty(base=16, maximum=20, threshold=10, window_ms=WINDOW)
    a.observe(NOW, 0)
    assert not a.due(NOW + WINDOW - 1)
    assert a.due(NOW + WINDOW)


def test_the_minimum_accepted_is_one_step_below_the_level_in_force() -> None:
    a = AdaptiveDifficulty(base=16, maximum=20, threshold=10, window_ms=WINDOW)
    minimums = [a.minimum]
    for k in range(5):
        a.observe(NOW + k * WINDOW, 50)
        minimums.append(a.minimum)
    # levels 16, 17, 18, 19, 20, 20: a challenge of the level before a rise still passes
    assert minimums == [16, 16, 17, 18, 19, 19]
    assert proof_of_work.GRACE_STEPS == 1
    a.observe(NOW + 9 * WINDOW, 0)
    assert a.current == 16 and a.minimum == 16  # never below the configured difficulty


def test_without_headroom_the_difficulty_is_fixed() -> None:
    a = AdaptiveDifficulty(base=16, maximum=16, threshold=10, window_ms=WINDOW)
    assert not a.due(NOW)
    assert a.observe(NOW, 1000) == 16
