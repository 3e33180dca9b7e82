"""Word tokens: drawn from BIP-39's list, valid as Synapse registration tokens,
and a typed form (capitals, spaces) mapped back to the token only when it is one."""

from __future__ import annotations

import re

import pytest

from synapse_email_gate.rules import words
from synapse_email_gate.rules.words import (
    MAX_WORDS,
    MIN_WORDS,
    entropy_bits,
    new_word_token,
    typed_word_token,
    wordlist,
)

# Synapse's grammar of a registration token (rest/admin/registration_tokens.py).
SYNAPSE_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def test_the_list_is_bip39s_2048_words_told_apart_by_four_letters() -> None:
    listed = wordlist()
    assert len(listed) == 2048 == len(set(listed))
    assert listed[0] == "abandon" and listed[-1] == "zoo"
    assert len({word[:4] for word in listed}) == 2048
    assert all(re.fullmatch(r"[a-z]{3,8}", word) for word in listed)


def test_entropy_is_eleven_bits_a_word() -> None:
    assert entropy_bits(MIN_WORDS) == 44
    assert entropy_bits(5) == 55


@pytest.mark.parametrize("count", range(MIN_WORDS, MAX_WORDS + 1))
def test_every_allowed_length_is_a_valid_synapse_token(count: int) -> None:
    longest = "-".join(["abstract"] * count)  # 8 letters, the longest words
    assert SYNAPSE_TOKEN.match(longest), longest
    token = new_word_token(count)
    assert SYNAPSE_TOKEN.match(token)
    parts = token.split("-")
    assert len(parts) == count and all(part in wordlist() for part in parts)


@pytest.mark.parametrize("count", [0, 1, 3, MAX_WORDS + 1])
def test_fewer_than_four_or_more_than_seven_words_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match="4 to 7 words"):
        new_word_token(count)


def test_words_are_drawn_with_secrets_and_vary() -> None:
    drawn = {new_word_token() for _ in range(200)}
    assert len(drawn) == 200
    used = {part for token in drawn for part in token.split("-")}
    assert len(used) > 500  # 1000 draws from 2048 words


def test_the_list_must_keep_its_size_or_no_token_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    class Short:
        def __init__(self, language: str) -> None:
            self.wordlist = ["abandon", "ability"]

    words.wordlist.cache_clear()
    monkeypatch.setattr(words, "Mnemonic", Short)
    try:
        with pytest.raises(RuntimeError, match="2048 distinct words"):
            new_word_token()
    finally:
        monkeypatch.undo()
        words.wordlist.cache_clear()
    assert len(wordlist()) == 2048


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Maple River Copper Seven", "maple-river-copper-seven"),
        ("maple river copper lantern", None),  # "lantern" is not on the list
        ("Abandon Ability Able About", "abandon-ability-able-about"),
        ("  zoo  ZOO_zoo.zoo ", "zoo-zoo-zoo-zoo"),
        ("abandon--ability - able+about", "abandon-ability-able-about"),
        ("abandon-ability-able-about", "abandon-ability-able-about"),
        ("abandon ability able", None),  # three words: never a word token
        ("abandon ability able about zebra zoo zone youth", None),  # eight words
        ("abandon ability able abouts", None),  # not on the list
        ("ABCDEFGHJKLMNPQRSTUV", None),  # a random token is never rewritten
    ],
)
def test_a_typed_word_token_is_read_back_only_when_every_word_is_listed(
    typed: str, meant: str | None
) -> None:
    assert typed_word_token(typed) == meant
