"""Look-alike usernames (rules/usernames.py, `banned_usernames_lookalikes`): a literal ban
also bans its leetspeak spellings; regex bans only with `all`; ordinary names are
not caught by the folding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_email_gate.rules.usernames import UsernamePatterns, fold_name, lookalike_variant

BANS = ["admin", "^root$", "nazi", "(?i)^abuse$", "^postmaster$", "hitler", "^support$"]


@pytest.mark.parametrize(
    ("name", "ban"),
    [
        ("r00t", "^root$"),
        ("R00T", "^root$"),
        ("ro0t", "^root$"),
        ("r007", "^root$"),
        ("roo+", "^root$"),
        ("adm1n", "admin"),
        ("4dm1n", "admin"),
        ("@dmin", "admin"),
        ("adrnin", "admin"),  # rn looks like m
        ("siteadm1n", "admin"),  # unanchored, like the ban itself
        ("n4z1", "nazi"),
        ("n4zi_fan", "nazi"),
        ("abu5e", "(?i)^abuse$"),
        ("p0stm4st3r", "^postmaster$"),
        ("h1tl3r", "hitler"),
        ("hit1er", "hitler"),  # 1 for l ...
        ("supp0rt", "^support$"),
    ],
)
def test_a_literal_ban_bans_its_lookalikes(name: str, ban: str) -> None:
    patterns = UsernamePatterns.compile(BANS)
    assert patterns.first_match(name.lower()) == ban
    assert patterns.first_match(name) == ban  # matching ignores case anyway
    assert UsernamePatterns.compile(BANS, "off").first_match(name.lower()) is None


def test_one_can_stand_for_i_and_for_l() -> None:
    patterns = UsernamePatterns.compile(["^lil$"])
    assert [patterns.matches(n) for n in ("lil", "1i1", "l1l", "111", "lii")] == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_a_digit_in_the_ban_also_matches_the_letter_it_stands_for() -> None:
    patterns = UsernamePatterns.compile(["b00b", "^1337$"])
    assert patterns.first_match("boob") == "b00b"
    assert patterns.first_match("leet") == "^1337$"
    assert patterns.first_match("1ee7") == "^1337$"


def test_anchors_keep_their_meaning() -> None:
    patterns = UsernamePatterns.compile(["^root$"])
    for name in ("r00ted", "gr00t", "r00t2", "xroot"):
        assert not patterns.matches(name), name


ORDINARY = [
    "alice",
    "bob",
    "carol",
    "dave",
    "eve",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "oscar",
    "mohammed",
    "maria",
    "john",
    "james",
    "tim",
    "sam",
    "lisa",
    "robert",
    "rosa",
    "bjorn",
    "vernon",
    "savvy",
    "clara",
    "rooney",
    "emma",
    "noah",
    "liam",
    "sophia",
    "isabella",
    "mia",
    "lucas",
    "ethan",
    "r0b0t",
    "rooster",
    "root_beer",
    "admiral",
    "madmax",
    "supporter",
    "poster",
    "mrsmith",
    "4lice",
    "b0b",
    "jo3",
    "k8",
    "l33tcoder",
    "room1",
    "route66",
    "a1ice",
]


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_names_are_not_banned_by_the_folding(name: str) -> None:
    folded = UsernamePatterns.compile(BANS)
    plain = UsernamePatterns.compile(BANS, "off")
    assert folded.first_match(name) == plain.first_match(name) is None, name


def test_regex_bans_are_matched_as_written_unless_all() -> None:
    bans = ["^spam[a-z]*$", "n[a4]z[i1]"]
    assert lookalike_variant(bans[0]) is None and lookalike_variant(bans[1]) is None
    literal = UsernamePatterns.compile(bans)
    everything = UsernamePatterns.compile(bans, "all")
    assert literal.first_match("5pammer") is None
    assert everything.first_match("5pammer") == "^spam[a-z]*$"
    assert everything.first_match("spammer") == "^spam[a-z]*$"
    # `all` reads 1 as i and as l: both readings are searched.
    assert UsernamePatterns.compile(["^lol$"], "all").first_match("1o1") == "^lol$"
    assert UsernamePatterns.compile(["^kiwi$"], "all").first_match("k1w1") == "^kiwi$"
    for name in ORDINARY:
        assert everything.first_match(name) is None, name


def test_fold_name_reads_digits_and_symbols_as_letters() -> None:
    assert fold_name("n4z1") == ("nazi", "nazl")
    assert fold_name("r00t") == ("root",)
    assert fold_name("alice") == ()
    assert fold_name("t0m+jerry") == ("tomtjerry",)


@pytest.mark.parametrize(
    ("pattern", "variant"),
    [
        ("root", "r[o0][o0][t7\\+]"),
        ("^root$", "^r[o0][o0][t7\\+]$"),
        ("(?i)Admin", "[a4@]d(?:m|rn)[i1]n"),
        ("ad\\.min", "[a4@]d\\.(?:m|rn)[i1]n"),
        ("xyz", "xy[z2]"),
        ("ch", None),  # nothing looks like c or h
        ("a.b", None),  # a regex: . is any character
        ("admin+", None),
        ("^(abuse|postmaster)$", None),
        ("[a-z]+bot", None),
    ],
)
def test_which_bans_are_literal_and_their_variant(pattern: str, variant: str | None) -> None:
    assert lookalike_variant(pattern) == variant


def test_variants_stay_linear_and_the_set_stays_one_automaton() -> None:
    """No repetition in a variant (classes and pair alternations only), and each
    literal costs one more pattern in the same RE2 set."""
    words = [f"^word{i}$" for i in range(2_000)]
    for word in words[:50]:
        variant = lookalike_variant(word)
        assert variant is not None
        assert not re.search(r"(?<!\\)[*+?{]", variant.replace("(?:", "(")), variant
    patterns = UsernamePatterns.compile(words)
    assert len(patterns) == 2_000  # sources are the bans as written
    assert patterns.first_match("w0rd1999") == "^word1999$"
    assert patterns.first_match("x" * 10_000) is None


_WORD = st.text(alphabet="abegilmostwz0123456789_-.", min_size=1, max_size=8)


@given(
    st.lists(st.tuples(st.sampled_from(["", "^"]), _WORD, st.sampled_from(["", "$"])), max_size=5),
    st.text(alphabet="abegilmnorstvwz0123456789_-.$@+", max_size=14),
)
def test_a_ban_in_its_lookalike_form_still_matches_every_name_the_word_matches(
    parts: list[tuple[str, str, str]], name: str
) -> None:
    """The set holds each literal ban's variant instead of the ban (one pattern per
    ban): every name the bans match as written, it matches too, naming the same ban."""
    bans = list(dict.fromkeys(start + re.escape(word) + end for start, word, end in parts))
    written = UsernamePatterns.compile(bans, "off")
    lookalike = UsernamePatterns.compile(bans, "literal")
    assert set(written.match_indices(name)) <= set(lookalike.match_indices(name))
    for _start, word, _end in parts:
        assert lookalike.first_match(word) is not None
