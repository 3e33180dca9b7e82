"""Translations of the pages and mails, and choosing a language.

A language is one YAML file named after its code (`de.yaml`, `pt-BR.yaml`)
holding nested mappings of texts; nested keys are joined with dots
(`request.title`). The module ships en, de and fr in `translations/`; an
admin adds or overrides a language by dropping a file into `translations_dir`
(a file for a shipped language overrides only the keys it holds). A key
missing from a language falls back to the default language, then to English.

Texts may hold `{name}` placeholders, filled from the keyword arguments of
the call; a placeholder without a value stays as written. A text with forms
for one and for many is a mapping `{one: ..., other: ...}`, chosen by `count`.
Texts are plain text: the HTML templates escape them.

The language of a page comes from `?lang=` (which also sets a cookie), then
the cookie, then `Accept-Language`, then `default_language`.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from synapse_email_gate.config.durations import in_units

logger = logging.getLogger(__name__)

LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "translations"
FALLBACK = "en"
LANG_COOKIE = "email_gate_lang"
# Languages written right to left, for <html dir="rtl">.
_RTL = frozenset({"ar", "fa", "he", "ur", "yi", "ps", "dv", "ckb"})
# Languages where 0 takes the singular ("0 jour"); elsewhere only 1 does.
_ZERO_IS_ONE = frozenset({"fr", "pt", "hy", "kab"})
_ACCEPT_ITEM = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$"
)


class TranslationError(ValueError):
    """A translation file that cannot be used; the message names the file and key."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        elif isinstance(value, str):
            out[path] = value
        else:
            raise TranslationError(f"{path}: expected a text, got {type(value).__name__}")
    return out


def placeholders(text: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field}
    except ValueError as e:
        raise TranslationError(f"unbalanced braces: {e}") from e


def read_file(path: Path) -> dict[str, str]:
    """One translation file, flattened; TranslationError names the file and the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TranslationError(f"{path}: cannot read: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise TranslationError(f"{path}: expected a mapping of texts")
    try:
        return flatten(data)
    except TranslationError as e:
        raise TranslationError(f"{path}: {e}") from e


class _Keep(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@attrs.frozen
class Language:
    code: str
    name: str


class Translator:
    """The texts of one language; call it as `_("request.title", server="x")`."""

    def __init__(self, code: str, texts: Mapping[str, str], fallback: Mapping[str, str]) -> None:
        self.code = code
        self._texts = texts
        self._fallback = fallback
        self.dir = "rtl" if code.split("-", 1)[0] in _RTL else "ltr"

    def text(self, key: str) -> str | None:
        found = self._texts.get(key)
        return found if found is not None else self._fallback.get(key)

    def __call__(self, key: str, /, count: int | None = None, **values: object) -> str:
        text = None
        if count is not None:
            values["count"] = count
            one = count == 1 or (count == 0 and self.code.split("-")[0] in _ZERO_IS_ONE)
            text = self.text(f"{key}.one" if one else f"{key}.other")
        if text is None:
            text = self.text(key)
        if text is None:
            logger.warning("no translation for %r", key)
            return key
        if "{" not in text and "}" not in text:
            return text
        try:
            return text.format_map(_Keep(values))
        except (ValueError, IndexError, AttributeError, KeyError):
            return text

    def duration(self, ms: int) -> str:
        """`86400000` -> `1 day` / `1 Tag` / `1 jour`: the largest whole unit that fits."""
        count, unit = in_units(ms)
        return self(f"duration.{unit}", count=count)


class Translations:
    """Every language found: the shipped files, then the admin's directory."""

    def __init__(self, languages: Mapping[str, Mapping[str, str]], default: str = FALLBACK) -> None:
        if FALLBACK not in languages:
            raise TranslationError(f"no {FALLBACK} translation")
        if default not in languages:
            raise TranslationError(
                f"default_language {default!r} has no translation file "
                f"(have: {', '.join(sorted(languages))})"
            )
        self._languages = {code: dict(texts) for code, texts in languages.items()}
        self.default = default
        base = dict(self._languages[FALLBACK])
        base.update(self._languages[default])
        self._fallback = base
        self._by_lower = {code.lower(): code for code in self._languages}

    @staticmethod
    def load(extra_dir: str | None = None, default: str = FALLBACK) -> Translations:
        languages: dict[str, dict[str, str]] = {}
        for directory in (BUILTIN_DIR, Path(extra_dir) if extra_dir else None):
            if directory is None:
                continue
            for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
                code = path.stem
                if not LANGUAGE_CODE.match(code):
                    raise TranslationError(
                        f"{path}: the file name must be a language code like de.yaml or pt-BR.yaml"
                    )
                languages.setdefault(code, {}).update(read_file(path))
        translations = Translations(languages, default)
        translations.check()
        return translations

    def check(self) -> None:
        """Refuse texts whose placeholders the English text does not have."""
        english = self._languages[FALLBACK]
        for code, texts in self._languages.items():
            for key, text in texts.items():
                used = placeholders(text)
                reference = english.get(key)
                if reference is None:
                    continue
                unknown = used - placeholders(reference) - {"count"}
                if unknown:
                    raise TranslationError(
                        f"{code}: {key}: unknown placeholder(s) {sorted(unknown)}; "
                        f"the English text has {sorted(placeholders(reference)) or 'none'}"
                    )

    @property
    def codes(self) -> list[str]:
        return sorted(self._languages)

    def languages(self) -> list[Language]:
        """Every language with its own name (`Deutsch`), for the language switch."""
        return [
            Language(code, self._languages[code].get("language.name", code)) for code in self.codes
        ]

    def known(self, code: str | None) -> str | None:
        """The language's code as we spell it, when we have it (`DE` -> `de`)."""
        if not code:
            return None
        return self._by_lower.get(code.strip().lower())

    def translator(self, code: str | None) -> Translator:
        lang = self.known(code) or self.default
        return Translator(lang, self._languages[lang], self._fallback)

    def negotiate(
        self, asked: str | None = None, cookie: str | None = None, accept: str | None = None
    ) -> str:
        """`?lang=`, then the cookie, then Accept-Language, then the default."""
        for candidate in (asked, cookie):
            found = self.known(candidate)
            if found:
                return found
        if not accept:
            return self.default
        for candidate in accepted_languages(accept):
            found = self.known(candidate) or self.known(candidate.split("-", 1)[0])
            if found:
                return found
            for code in self.codes:  # `pt` asked, `pt-BR` there
                if code.lower().startswith(candidate.lower() + "-"):
                    return code
        return self.default


def accepted_languages(header: str) -> list[str]:
    """Accept-Language's tags, most wanted first; q=0 and `*` left out."""
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:32]):
        match = _ACCEPT_ITEM.match(item)
        if not match:
            continue
        tag, q = match.group(1), match.group(2)
        try:
            weight = float(q) if q is not None else 1.0
        except ValueError:
            continue
        if tag != "*" and weight > 0:
            weighted.append((-weight, index, tag))
    return [tag for _, _, tag in sorted(weighted)]
