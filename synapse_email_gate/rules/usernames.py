"""Moderator-written regular expressions, matched in one linear-time pass.

Ban lists can hold tens of thousands of patterns written by people who are
not regex experts, and the text they are matched against comes from anyone on
the internet.  Python's ``re`` backtracks (``(a+)+$`` takes exponential time)
and looping over 20,000 compiled patterns per request is slow, so every
pattern set is compiled into a single RE2 ``Set``: one automaton, one pass
over the input, linear time whatever the patterns are.

The price is RE2's syntax: backreferences and lookaround are not available.
Such patterns are refused when the policy is loaded, with a message naming
the first offending pattern, so a moderator finds out at once rather than at
the first request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Self

import re2

__all__ = [
    "LOOKALIKE_MODES",
    "PatternError",
    "PatternMatchError",
    "PatternSet",
    "UsernamePatterns",
    "fold_name",
    "lookalike_variant",
]

# RE2 needs memory for the compiled program *and* for the lazily built DFA
# that a Set must use (a Set cannot fall back to the NFA).  Measured: about
# 0.7 KiB per typical ban pattern is the minimum; the budget below gives
# several times that so the DFA cache rarely resets.  Memory is only touched
# as the DFA grows, so a generous budget does not cost RSS up front.
_BASE_MEM = 32 << 20
_MEM_PER_PATTERN = 2 << 10
_MAX_MEM = 1 << 30

# Inputs that any "match everything" pattern (``.*``, ``x?``, ``|admin``)
# matches; such a pattern would ban every name, which is never intended.
_EVERYTHING_PROBES = ("", "x", "Zz 9-._=/+")


class PatternError(ValueError):
    """A pattern cannot be used.  The message names the pattern.

    ``reason`` alone (without the pattern) lets callers that know the pattern
    under another name, such as a ``/regex/`` email ban entry, reword it.
    """

    def __init__(self, reason: str, *, pattern: str | None = None, index: int | None = None):
        super().__init__(reason if pattern is None else f"pattern {pattern!r}: {reason}")
        self.reason = reason
        self.pattern = pattern
        self.index = index


class PatternMatchError(RuntimeError):
    """RE2 ran out of DFA memory while matching (it would otherwise say "no match")."""


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = max_mem
    return options


# Verdicts of `_rejection` by pattern text. A reload (a changed policy file, a
# ban added through the API, an entry expiring) compiles mostly the patterns it
# compiled before; checking each one again took 0.3 s of 0.38 for 10,000
# patterns, with the reactor waiting (benchmarks/RESULTS.md).
_VERDICTS: dict[str, str | None] = {}
_MAX_VERDICTS = 200_000


def _rejection(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used on its own, or ``None`` if it can."""
    try:
        return _VERDICTS[pattern]
    except KeyError:
        pass
    verdict = _judge(pattern)
    if len(_VERDICTS) >= _MAX_VERDICTS:
        _VERDICTS.clear()
    _VERDICTS[pattern] = verdict
    return verdict


def _judge(pattern: str) -> str | None:
    try:
        regex = re2.compile(pattern, _options(re2.Options().max_mem))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected by RE2"
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if all(regex.search(probe) is not None for probe in _EVERYTHING_PROBES):
        return "matches every input (it matches the empty string)"
    return None


def _check_all(patterns: Sequence[str]) -> None:
    """Raise :class:`PatternError` for the first pattern that cannot be used."""
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise PatternError("not a string", pattern=str(pattern), index=index)
        reason = _rejection(pattern)
        if reason is not None:
            raise PatternError(reason, pattern=pattern, index=index)


def _build_set(patterns: Sequence[str]) -> re2.Set:
    """Compile all patterns plus a trailing always-matching sentinel.

    ``RE2::Set::Match`` reports running out of DFA memory as "no match"; the
    sentinel (the empty pattern, index ``len(patterns)``) turns that silent
    false negative into something :meth:`PatternSet.first_match` can detect.
    """
    max_mem = _BASE_MEM + _MEM_PER_PATTERN * len(patterns)
    while True:
        regex_set = re2.Set.SearchSet(_options(min(max_mem, _MAX_MEM)))
        for index, pattern in enumerate(patterns):
            try:
                regex_set.Add(pattern)
            except re2.error as exc:
                raise PatternError("rejected by RE2 set", pattern=pattern, index=index) from exc
        regex_set.Add("")
        try:
            regex_set.Compile()
        except re2.error:
            if max_mem >= _MAX_MEM:
                raise PatternError(
                    f"{len(patterns)} patterns are too large to compile together "
                    f"within {_MAX_MEM >> 20} MiB"
                ) from None
            max_mem *= 2
        else:
            return regex_set


class PatternSet:
    """Regexes searched (not full-matched) in a text, case-insensitively.

    Immutable once compiled.  ``sources`` keeps the pattern texts in the
    order given, so indices can be mapped back to entries (and to any
    per-entry metadata a caller keeps alongside).
    """

    __slots__ = ("_set", "sources")

    def __init__(self, sources: tuple[str, ...], regex_set: re2.Set | None) -> None:
        self.sources = sources
        self._set = regex_set

    @classmethod
    def compile(cls, patterns: Sequence[str]) -> Self:
        """Compile ``patterns``; raise :class:`PatternError` naming the first bad one."""
        sources = tuple(patterns)
        _check_all(sources)
        # RE2 compiles an empty Set, but there is no point in keeping one.
        return cls(sources, _build_set(sources) if sources else None)

    @classmethod
    def empty(cls) -> Self:
        """A set that matches nothing."""
        return cls((), None)

    def __len__(self) -> int:
        return len(self.sources)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self)} patterns>)"

    def match_indices(self, text: str) -> list[int]:
        """Indices (into ``sources``) of every pattern found in ``text``, ascending."""
        found = self._found(text)
        return sorted(found) if len(found) > 1 else found

    def first_index(self, text: str) -> int | None:
        """The index of the earliest-listed pattern found in ``text``, or ``None``."""
        found = self._found(text)
        return min(found) if found else None

    def first_match(self, text: str) -> str | None:
        """The earliest-listed pattern found in ``text``, or ``None``."""
        index = self.first_index(text)
        return None if index is None else self.sources[index]

    def _found(self, text: str) -> list[int]:
        """Indices of the patterns found in ``text``, in no order (the sentinel left out)."""
        if self._set is None:
            return []
        found = self._set.Match(text) or []
        sentinel = len(self.sources)
        if len(found) == 1 and found[0] == sentinel:  # most texts: nothing found
            return []
        if sentinel not in found:
            raise PatternMatchError(
                f"RE2 ran out of memory matching {len(self)} patterns against {len(text)} chars"
            )
        return [index for index in found if index != sentinel]

    def matches(self, text: str) -> bool:
        return bool(self.match_indices(text))


# --- look-alike usernames ------------------------------------------------------
#
# Synapse localparts are ASCII (a-z 0-9 . _ = - / +), so the look-alikes that can
# reach a ban are digits and symbols standing for letters, and a few letter pairs.

LOOKALIKE_MODES = ("literal", "all", "off")

# What each character of a literal ban also matches in a name. Symmetric: a digit in
# a ban also matches the letter it stands for ("b00b" bans "boob").
_LOOKS_LIKE = {
    "a": "a4@",
    "b": "b86",
    "e": "e3",
    "g": "g96",
    "i": "i1",
    "l": "l1",
    "o": "o0",
    "s": "s5$",
    "t": "t7+",
    "z": "z2",
    "0": "0o",
    "1": "1il",
    "2": "2z",
    "3": "3e",
    "4": "4a",
    "5": "5s",
    "6": "6bg",
    "7": "7t",
    "8": "8b",
    "9": "9g",
}
# Letters that two others imitate side by side. (Not "cl" for "d": it would make a
# ban of "dick" ban "click".)
_PAIRS = {"m": "rn", "w": "vv"}
# A literal ban: a plain word, optionally anchored, with (?i) allowed (matching
# ignores case anyway). Escaped punctuation counts as the character itself.
_LITERAL = re.compile(r"(?:\(\?i\))?(\^?)((?:[A-Za-z0-9_=/-]|\\[._=/+-])+)(\$?)")
# What `all` reads a name as, for regex bans: digits and symbols as letters.
_FOLD_I = str.maketrans("0123456789@$+", "oizeasgtbgast")
_FOLD_L = str.maketrans("1", "l")


def _char_class(char: str) -> str:
    pair = _PAIRS.get(char)
    looks = _LOOKS_LIKE.get(char)
    if looks is None and pair is None:
        return re.escape(char)
    single = f"[{''.join(re.escape(c) for c in looks)}]" if looks else re.escape(char)
    return f"(?:{single}|{pair})" if pair else single


def lookalike_variant(pattern: str) -> str | None:
    """For a literal ban (`admin`, `^root$`, `(?i)n4zi`): a pattern that also matches
    its look-alikes (`r00t`, `adrn1n`, `nazi`). None for a regex, or for a word
    without look-alikes. Linear time like any RE2 pattern: character classes and
    two-way alternations, no repetition."""
    found = _LITERAL.fullmatch(pattern)
    if found is None:
        return None
    start, word, end = found.groups()
    chars = re.sub(r"\\(.)", r"\1", word).lower()
    variant = start + "".join(_char_class(c) for c in chars) + end
    return None if variant == start + re.escape(chars) + end else variant


def fold_name(localpart: str) -> tuple[str, ...]:
    """The readings of a name with digits and symbols as letters, for regex bans
    under `all`: `1` can be an `i` or an `l`, so there are up to two."""
    folded = localpart.lower().translate(_FOLD_I)
    readings = [folded]
    if "1" in localpart:
        readings.append(localpart.lower().translate(_FOLD_L).translate(_FOLD_I))
    return tuple(dict.fromkeys(reading for reading in readings if reading != localpart))


class UsernamePatterns(PatternSet):
    """``banned_usernames``: patterns searched in a Matrix localpart.

    ``first_match(localpart)`` returns the offending pattern's source text,
    for logs and moderator tooling.  Never show it to the requester.

    ``lookalikes`` (`banned_usernames_lookalikes`): with ``literal`` (the
    default) each literal ban also bans its look-alikes: the RE2 set holds its
    `lookalike_variant` in its place, which matches the word as written too (each
    character's class holds the character), so the set has one pattern per ban
    and its indices are the sources'. With ``all`` regex bans are also searched in
    the name read with digits as letters (`fold_name`: at most two more passes);
    ``off`` matches the patterns as written.
    """

    __slots__ = ("_fold",)

    def __init__(
        self, sources: tuple[str, ...], regex_set: re2.Set | None, fold: bool = False
    ) -> None:
        super().__init__(sources, regex_set)
        self._fold = fold

    @classmethod
    def compile(cls, patterns: Sequence[str], lookalikes: str = "literal") -> Self:
        if lookalikes not in LOOKALIKE_MODES:
            raise PatternError(f"look-alike mode must be one of {', '.join(LOOKALIKE_MODES)}")
        sources = tuple(patterns)
        _check_all(sources)
        compiled = sources
        if lookalikes != "off":
            compiled = tuple(lookalike_variant(pattern) or pattern for pattern in sources)
        regex_set = _build_set(compiled) if compiled else None
        return cls(sources, regex_set, fold=lookalikes == "all")

    def match_indices(self, text: str) -> list[int]:
        if not self._fold:
            return super().match_indices(text)
        found = set(self._found(text))
        for reading in fold_name(text):
            found.update(self._found(reading))
        return sorted(found)

    def first_index(self, text: str) -> int | None:
        if not self._fold:
            return super().first_index(text)
        indices = self.match_indices(text)
        return indices[0] if indices else None
