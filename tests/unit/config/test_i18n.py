"""Translations (config/i18n.py): choosing a language, fallbacks, plurals, admin
files, and the shipped files' completeness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.i18n import (
    BUILTIN_DIR,
    TranslationError,
    Translations,
    accepted_languages,
    placeholders,
    read_file,
)

SHIPPED = ("en", "de", "fr")


def test_the_shipped_languages_are_there_with_their_own_names(
    translations: Translations,
) -> None:
    names = {lang.code: lang.name for lang in translations.languages()}
    assert names == {"en": "English", "de": "Deutsch", "fr": "Français"}


@pytest.mark.parametrize("lang", SHIPPED[1:])
def test_every_shipped_language_has_every_english_text(lang: str) -> None:
    english = read_file(BUILTIN_DIR / "en.yaml")
    other = read_file(BUILTIN_DIR / f"{lang}.yaml")
    missing = set(english) - set(other)
    assert not missing, sorted(missing)
    for key, text in other.items():
        if key in english:
            assert placeholders(text) <= placeholders(english[key]) | {"count"}, key


@pytest.mark.parametrize(
    ("asked", "cookie", "accept", "expected"),
    [
        (None, None, None, "en"),
        (None, None, "de-DE,de;q=0.9,en;q=0.8", "de"),
        (None, None, "es, fr;q=0.5, de;q=0.4", "fr"),
        (None, None, "en;q=0.1, fr", "fr"),
        (None, None, "es, *;q=0.5", "en"),
        (None, None, "de;q=0, fr;q=0.2", "fr"),
        (None, "fr", "de", "fr"),
        ("de", "fr", "en", "de"),
        ("DE", None, None, "de"),
        ("xx", "nope", "fr", "fr"),
        ("<script>", None, None, "en"),
        (None, None, "garbage;;;q=x, ,,", "en"),
    ],
)
def test_negotiation_prefers_the_query_then_the_cookie_then_accept_language(
    translations: Translations, asked: str, cookie: str, accept: str, expected: str
) -> None:
    assert translations.negotiate(asked, cookie, accept) == expected


def test_accept_language_is_ordered_by_weight_then_position() -> None:
    assert accepted_languages("fr;q=0.5, de, en-GB;q=0.8") == ["de", "en-GB", "fr"]
    assert accepted_languages("a" * 100) == []


def test_a_regional_request_finds_the_language_and_the_other_way_round() -> None:
    translations = Translations({"en": {"x": "en"}, "pt-BR": {"x": "pt"}})
    assert translations.negotiate(accept="pt") == "pt-BR"
    assert translations.negotiate(accept="pt-BR") == "pt-BR"
    assert Translations.load().negotiate(accept="de-AT") == "de"


def test_plurals_and_durations(translations: Translations) -> None:
    en, de, fr = (translations.translator(code) for code in SHIPPED)
    assert en.duration(86_400_000) == "1 day"
    assert en.duration(2 * 3_600_000) == "2 hours"
    assert de.duration(2 * 86_400_000) == "2 Tage"
    assert de.duration(90 * 60_000) == "90 Minuten"
    assert fr.duration(45_000) == "45 secondes"
    assert fr("refused.retry", count=1) == "Vous pourrez réessayer dans 1 minute."
    assert fr("duration.days", count=0) == "0 jour"  # French: 0 takes the singular
    assert en("duration.days", count=0) == "0 days"


def test_placeholders_are_filled_and_unknown_ones_kept(translations: Translations) -> None:
    en = translations.translator("en")
    assert en("register.done", user_id="@a:b") == "Welcome! The account @a:b has been created."
    assert en("register.done") == "Welcome! The account {user_id} has been created."
    assert en("no.such.key") == "no.such.key"


def test_admin_files_add_languages_and_override_keys(tmp_path: Path) -> None:
    (tmp_path / "nl.yaml").write_text(
        "language:\n  name: Nederlands\nrequest:\n  title: Account aanmaken\n"
    )
    (tmp_path / "de.yaml").write_text("request:\n  submit: Schick mir ein Token\n")
    translations = Translations.load(str(tmp_path))
    nl = translations.translator("nl")
    assert nl("request.title") == "Account aanmaken"
    assert nl("request.submit") == "Send me a token"  # missing: English
    de = translations.translator("de")
    assert de("request.submit") == "Schick mir ein Token"
    assert de("request.title") == "Konto anlegen"  # the rest of the shipped file stays
    assert "Nederlands" in [lang.name for lang in translations.languages()]


def test_the_default_language_is_the_fallback_before_english(tmp_path: Path) -> None:
    (tmp_path / "nl.yaml").write_text("request:\n  title: Account aanmaken\n")
    translations = Translations.load(str(tmp_path), default="de")
    assert translations.negotiate(accept="es") == "de"
    assert translations.translator("nl")("request.submit") == "Token zuschicken"


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("nl.yaml", "- a list\n", "expected a mapping"),
        ("nl.yaml", "request:\n  title: [1, 2]\n", "request.title: expected a text"),
        ("nl.yaml", "request: {title: 'x\n", "cannot read"),
        ("nl.yaml", "register:\n  done: 'Hallo {name}'\n", "unknown placeholder"),
        ("nl.yaml", "register:\n  done: 'Hallo {user_id'\n", "braces"),
        ("Dutch.yaml", "a: b\n", "language code"),
    ],
)
def test_bad_admin_files_are_refused_naming_file_and_key(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(TranslationError, match=re.escape(problem)):
        Translations.load(str(tmp_path))


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "nl.yaml").write_text("- nope\n")
    with pytest.raises(ConfigError, match=r"^translations_dir: .*nl\.yaml"):
        GateConfig.parse({"translations_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"^default_language: .*'xx' has no translation"):
        GateConfig.parse({"default_language": "xx"})
    with pytest.raises(ConfigError, match=r"^default_language: expected a language code"):
        GateConfig.parse({"default_language": "Deutsch"})
    with pytest.raises(ConfigError, match=r"^translations_dir: .* is not a directory"):
        GateConfig.parse({"translations_dir": str(tmp_path / "missing")})
    parsed = GateConfig.parse({"translations_dir": str(tmp_path.parent), "default_language": "fr"})
    assert parsed.pages.default_language == "fr"
