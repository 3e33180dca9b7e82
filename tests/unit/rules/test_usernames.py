import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_email_gate.rules.usernames import (
    PatternError,
    PatternMatchError,
    PatternSet,
    UsernamePatterns,
    lookalike_variant,
)


def test_pattern_is_searched_not_full_matched() -> None:
    patterns = UsernamePatterns.compile(["admin"])
    assert patterns.first_match("superadmin42") == "admin"


def test_anchors_still_anchor() -> None:
    patterns = UsernamePatterns.compile(["^root$"])
    assert patterns.matches("root")
    assert not patterns.matches("rooted")
    assert not patterns.matches("chroot")


def test_matching_is_case_insensitive() -> None:
    patterns = UsernamePatterns.compile(["admin"])
    assert patterns.matches("AdMiN")


def test_inline_case_insensitive_flag_is_harmless() -> None:
    patterns = UsernamePatterns.compile(["(?i)admin"])
    assert patterns.matches("ADMIN")
    assert patterns.matches("admin")


def test_uppercase_pattern_matches_lowercase_text() -> None:
    assert UsernamePatterns.compile(["ADMIN"]).matches("admin")


def test_no_match_returns_none() -> None:
    patterns = UsernamePatterns.compile(["admin", "^root$"])
    assert patterns.first_match("alice") is None
    assert not patterns.matches("alice")


def test_first_match_returns_earliest_listed_matching_pattern() -> None:
    patterns = UsernamePatterns.compile(["zzz", "min$", "adm"])
    assert patterns.first_match("admin") == "min$"


def test_match_indices_lists_every_matching_pattern() -> None:
    patterns = PatternSet.compile(["a", "b", "c"])
    assert patterns.match_indices("cab") == [0, 1, 2]


def test_empty_set_matches_nothing() -> None:
    for patterns in (UsernamePatterns.compile([]), UsernamePatterns.empty()):
        assert len(patterns) == 0
        assert patterns.first_match("anything") is None
        assert not patterns.matches("")


def test_len_counts_patterns() -> None:
    assert len(UsernamePatterns.compile(["a", "b", "a"])) == 3


def test_sources_keep_order_for_metadata() -> None:
    assert UsernamePatterns.compile(["b", "a"]).sources == ("b", "a")


@pytest.mark.parametrize(
    "bad",
    [r"(a)\1", r"foo(?=bar)", r"(?<!x)y", "[unclosed", "a{1001}", "(?P<n>x)(?P=n)"],
)
def test_patterns_re2_cannot_compile_are_refused_with_their_text(bad: str) -> None:
    with pytest.raises(PatternError) as info:
        UsernamePatterns.compile(["fine", bad])
    assert repr(bad) in str(info.value)
    assert info.value.index == 1
    assert info.value.pattern == bad


def test_first_bad_pattern_is_reported() -> None:
    with pytest.raises(PatternError) as info:
        UsernamePatterns.compile(["ok", "(", r"(x)\1"])
    assert str(info.value).startswith("pattern '(':")
    assert info.value.index == 1


def test_pattern_error_carries_reason_without_pattern() -> None:
    with pytest.raises(PatternError) as info:
        UsernamePatterns.compile([r"(x)\1"])
    assert info.value.reason == r"invalid escape sequence: \1"
    assert str(info.value) == rf"pattern '(x)\\1': {info.value.reason}"


class _OutOfMemorySet:
    """Stands in for an RE2 Set whose DFA ran out of memory: it reports nothing."""

    def Match(self, text: str) -> list[int]:
        return []


def test_re2_out_of_memory_raises_instead_of_reporting_no_match() -> None:
    patterns = PatternSet(("admin",), _OutOfMemorySet())
    with pytest.raises(PatternMatchError):
        patterns.matches("admin")


def test_pattern_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="missing"):
        UsernamePatterns.compile(["["])


@pytest.mark.parametrize("everything", ["", ".*", "x?", "|admin", "(?i)", "^"])
def test_patterns_matching_everything_are_refused(everything: str) -> None:
    with pytest.raises(PatternError, match="matches every input"):
        UsernamePatterns.compile(["admin", everything])


def test_pattern_matching_empty_string_but_not_everything_is_accepted() -> None:
    patterns = UsernamePatterns.compile(["^(admin)?$"])
    assert patterns.matches("admin")
    assert not patterns.matches("alice")


def test_catastrophic_backtracking_pattern_is_accepted_and_harmless() -> None:
    patterns = UsernamePatterns.compile([r"^(a+)+$"])
    assert not patterns.matches("a" * 5000 + "!")
    assert patterns.matches("a" * 5000)


def test_non_ascii_text_and_patterns() -> None:
    sigma, capital_sigma = "\u03c3", "\u03a3"
    patterns = UsernamePatterns.compile(["ädmin", sigma])
    assert patterns.first_match("ÄDMIN") == "ädmin"
    assert patterns.first_match(capital_sigma) == sigma


def _corpus_words(rng: random.Random, count: int) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._-="
    return ["".join(rng.choices(alphabet, k=rng.randint(3, 12))) for _ in range(count)]


def test_twenty_thousand_patterns_agree_with_naive_python_re() -> None:
    rng = random.Random(20_000)
    words = _corpus_words(rng, 14_000)
    patterns = [re.escape(word) for word in words]
    templates = [r"^spam{i}\d+$", r"{w}.*x{i}", r"[0-9]{{3,}}{w}", r"(?i)^adm{i}(in)?$"]
    for i in range(6_000):
        word = re.escape(words[i][:4])
        patterns.append(templates[i % 4].format(i=i, w=word))
    compiled = UsernamePatterns.compile(patterns, "off")
    folding = UsernamePatterns.compile(patterns)  # the default: literal look-alikes too
    assert len(compiled) == len(folding) == 20_000

    corpus = [rng.choice(words).upper() for _ in range(50)]
    corpus += [f"spam{i}{i * 7}" for i in range(0, 6_000, 400)]
    corpus += [f"ADM{i}in" for i in range(3, 6_000, 400)]
    corpus += [f"{words[i][:4]}zzz x{i}" for i in range(1, 6_000, 400)]
    corpus += ["".join(rng.choices("abcxyz0123456789.", k=rng.randint(1, 255))) for _ in range(50)]
    corpus += [f"{words[i]}".replace("o", "0").replace("e", "3") for i in range(0, 14_000, 500)]
    naive = [re.compile(p, re.IGNORECASE) for p in patterns]
    variants = [lookalike_variant(p) for p in patterns]
    naive_variants = [re.compile(v, re.IGNORECASE) if v else None for v in variants]
    matched: set[int] = set()
    folded_only: set[int] = set()
    for text in corpus:
        expected = [i for i, regex in enumerate(naive) if regex.search(text)]
        assert compiled.match_indices(text) == expected, text
        lookalike = [i for i, regex in enumerate(naive_variants) if regex and regex.search(text)]
        assert folding.match_indices(text) == sorted(set(expected) | set(lookalike)), text
        matched.update(expected)
        folded_only.update(set(lookalike) - set(expected))
    assert any(i < 14_000 for i in matched), "no literal pattern was exercised"
    assert any(i >= 14_000 for i in matched), "no regex pattern was exercised"
    assert folded_only, "no look-alike was exercised"


_SAFE_PATTERNS = st.lists(
    st.sampled_from(["ab", "^a", "b$", "a.c", "[0-9]+x", "x|yz", r"\d{2}", "é", "q+"]),
    max_size=6,
)


@given(_SAFE_PATTERNS, st.text(max_size=40))
def test_verdicts_agree_with_python_re_on_arbitrary_text(patterns: list[str], text: str) -> None:
    compiled = PatternSet.compile(patterns)
    expected = next((p for p in patterns if re.search(p, text, re.IGNORECASE)), None)
    assert compiled.first_match(text) == expected


def test_a_rejected_pattern_is_rejected_again_when_its_verdict_is_remembered() -> None:
    """Verdicts are kept across compiles (reloads recompile the same patterns)."""
    messages = []
    for _ in range(2):
        with pytest.raises(PatternError) as caught:
            PatternSet.compile(["^fine$", "(?<=x)y"])
        messages.append((str(caught.value), caught.value.index))
    assert messages[0] == messages[1]
    assert messages[0][1] == 1 and "(?<=x)y" in messages[0][0]
    # An accepted pattern stays accepted, and matches as before.
    assert PatternSet.compile(["^fine$"]).first_match("fine") == "^fine$"
