"""Tokens of words, for invites read aloud: `maple-river-copper-seven-lantern`.

The words are BIP-39's English list, as the `mnemonic` package ships it: 2048
lowercase ASCII words of 3 to 8 letters, no two alike in their first four
letters (a word half heard or mistyped is still told apart). Each word is drawn
with `secrets`, so a token of N words holds N x 11 bits. docs/admin-api.md says
why 4 words is the least allowed.
"""

from __future__ import annotations

import math
import re
import secrets
from functools import cache

from mnemonic import Mnemonic

LIST_SIZE = 2048
MIN_WORDS = 4
DEFAULT_WORDS = 5
# Seven words of at most 8 letters and six dashes: 62 characters, within Synapse's 64.
MAX_WORDS = 7
SEPARATOR = "-"
_WORD = re.compile(r"^[a-z]{3,8}$")
# What a person types between words instead of a dash.
_TYPED_GAPS = re.compile(r"[\s._~+-]+")


@cache
def wordlist() -> tuple[str, ...]:
    """The list, checked: a list of another size or shape would change the
    entropy the docs promise, so it refuses to serve rather than make weaker tokens."""
    words = tuple(Mnemonic("english").wordlist)
    if len(words) != LIST_SIZE or len(set(words)) != LIST_SIZE:
        raise RuntimeError(f"the BIP-39 word list must hold {LIST_SIZE} distinct words")
    if not all(_WORD.match(word) for word in words):
        raise RuntimeError("the BIP-39 word list must hold lowercase ASCII words of 3-8 letters")
    return words


@cache
def _known() -> frozenset[str]:
    return frozenset(wordlist())


def entropy_bits(count: int) -> float:
    return count * math.log2(LIST_SIZE)


def new_word_token(count: int = DEFAULT_WORDS) -> str:
    if not MIN_WORDS <= count <= MAX_WORDS:
        raise ValueError(f"a word token has {MIN_WORDS} to {MAX_WORDS} words")
    words = wordlist()
    return SEPARATOR.join(secrets.choice(words) for _ in range(count))


def typed_word_token(typed: str) -> str | None:
    """The word token a person meant by `Maple River copper_Seven lantern`:
    lowercase, one dash between words. None unless every word is on the list and
    their number is one a word token can have, so no other token is ever rewritten."""
    parts = [part for part in _TYPED_GAPS.split(typed.strip().lower()) if part]
    if not MIN_WORDS <= len(parts) <= MAX_WORDS:
        return None
    known = _known()
    if not all(part in known for part in parts):
        return None
    return SEPARATOR.join(parts)
