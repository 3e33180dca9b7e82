"""Translations: choosing a language, fallbacks, plurals, admin files, the shipped
files' completeness, and the mails in every language."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
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
from synapse_email_gate.mail.compose import MAIL_KINDS, MailComposer
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.storage.outbox import MailFacts
from synapse_email_gate.web.pages import error_text

TEMPLATES = Path(__file__).resolve().parents[2] / "synapse_email_gate" / "templates"
SHIPPED = ("en", "de", "fr")


@pytest.fixture(scope="module")
def translations() -> Translations:
    return Translations.load()


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


def test_refusals_are_said_in_the_page_language(translations: Translations) -> None:
    de = error_text(translations.translator("de"))
    en = error_text(translations.translator("en"))
    taken = Refusal(400, "M_USER_IN_USE", "User ID already taken.", "username")
    assert de(taken) == "Dieser Benutzername ist schon vergeben. Bitte wähle einen anderen."
    assert en(taken) == "This username is already taken. Please choose another."
    missing = Refusal(400, "M_MISSING_PARAM", "'email' is required.", "email")
    assert en(missing) == "Please enter your email address."
    # no English text for the code: the refusal's own, more precise message
    invalid = Refusal(400, "EMAIL_GATE_INVALID_EMAIL", "The domain has no dot.", "email")
    assert en(invalid) == "The domain has no dot."
    assert "E-Mail-Adresse" in de(invalid)
    unknown = Refusal(400, "M_SOMETHING_NEW", "Something new.")
    assert de(unknown) == "Something new."
    short = Refusal(400, "EMAIL_GATE_REASON_TOO_SHORT", "x", "reason")
    assert "30 Zeichen" in de(short, minimum=30)


# --- the mails ---------------------------------------------------------------


def composer(translations: Translations) -> MailComposer:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(),
        undefined=jinja2.StrictUndefined,
    )
    return MailComposer(
        lambda names: [env.get_template(name) for name in names],
        server_name="example.org",
        sender="Gate <gate@example.org>",
        page_base_url="https://matrix.example.org/_synapse/client/email_gate/",
        translations=translations,
        display_name="Example Chat",
    )


class Links(HTMLParser):
    """Every <a>: its href and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", ""
        if tag == "img":
            self.images += 1

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text.strip()))
            self._href = None


def facts(kind: str, lang: str) -> MailFacts:
    extra: dict[str, Any] = {}
    if kind == "verify":
        extra["code"] = "CODE123"
    if kind == "notice":
        extra = {"statement": "I like <b>chat</b>", "requester": "a@example.net"}
    if kind == "denied":
        extra["message"] = "Not now."
    return MailFacts(
        to="alice@example.net",
        localpart="alice",
        token="TOKEN2345" if kind == "token" else None,
        expires_ts=1_700_000_000_000 + 2 * 86_400_000,
        request_id="req1",
        kind=kind,
        lang=lang,
        **extra,
    )


@pytest.mark.parametrize("lang", SHIPPED)
@pytest.mark.parametrize("kind", MAIL_KINDS)
def test_every_mail_renders_in_every_language_without_hidden_links(
    translations: Translations, kind: str, lang: str
) -> None:
    mail = composer(translations).compose(facts(kind, lang), now_ms=1_700_000_000_000)
    assert "example.org" in mail.subject
    assert "@alice:example.org" in mail.text and "@alice:example.org" in mail.html
    assert "{" not in mail.text and "{" not in mail.subject, mail.text
    parser = Links()
    parser.feed(mail.html)
    assert parser.images == 0
    for href, text in parser.links:
        assert href == text, f"a link whose text is not its URL: {href!r} shown as {text!r}"
    if kind == "token":
        assert "TOKEN2345" in mail.text and "TOKEN2345" in mail.html
        link = "https://matrix.example.org/_synapse/client/email_gate/register?token=TOKEN2345"
        assert link in mail.text
        assert parser.links == [(link, link)]
        assert "2023-11-16 22:13 UTC" in mail.text
        in_words = {"en": "2 days", "de": "2 Tage", "fr": "2 jours"}[lang]
        assert in_words in mail.text and in_words in mail.html
    if kind == "notice":
        assert "&lt;b&gt;" in mail.html  # what requesters write is escaped


def test_the_token_mail_in_german(translations: Translations) -> None:
    mail = composer(translations).compose(facts("token", "de"), now_ms=1_700_000_000_000)
    assert mail.subject == "Dein Registrierungs-Token für example.org"
    assert re.search(r"Registrierungs-Token:\s+TOKEN2345", mail.text)
    assert 'lang="de"' in mail.html


def test_notices_to_moderators_use_the_default_language() -> None:
    translations = Translations.load(default="fr")
    mail = composer(translations).compose(facts("notice", "de"), now_ms=1_700_000_000_000)
    assert "attend une décision" in mail.text


# --- the pages' config -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"branding": {"logo_url": "https://cdn.example.org/logo.png"}}, r"^branding\.logo_url: "),
        ({"branding": {"consent_required": True}}, r"^branding\.consent_required: needs"),
        ({"branding": {"terms_url": "javascript:alert(1)"}}, r"^branding\.terms_url: "),
        ({"branding": {"intro": {"english": "hi"}}}, r"^branding\.intro: "),
        ({"branding": {"colour": "red"}}, r"^branding\.colour: unknown key"),
        ({"clients": [{"name": "X", "url": "https://x/{token}"}]}, r"^clients: item 0: url uses"),
        ({"clients": [{"name": "X", "url": "javascript:1"}]}, r"^clients: item 0: url"),
        ({"clients": {"name": "X"}}, r"^clients: expected a list"),
        ({"password": {"min_score": 5}}, r"^password\.min_score: must be at most 4"),
        ({"password": {"min_length": 0}}, r"^password\.min_length: must be at least 1"),
        ({"after_registration": {"join_rooms": ["lobby"]}}, r"^after_registration\.join_rooms: "),
        (
            {"after_registration": {"welcome": {"message": "Hi"}}},
            r"^after_registration\.welcome\.sender: required",
        ),
        (
            {"after_registration": {"welcome": {"sender": "@w:example.org"}}},
            r"^after_registration\.welcome\.message: required",
        ),
        ({"web_registration": {"client_api_url": "ftp://x"}}, r"^web_registration\.client_api_url"),
    ],
)
def test_bad_page_settings_are_refused_naming_the_key(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        GateConfig.parse(config)


def test_page_settings_defaults_and_values() -> None:
    defaults = GateConfig.parse({}).pages
    assert defaults.branding.consent_required is False
    assert [c.name for c in defaults.clients] == ["Element"]
    assert (defaults.password.min_length, defaults.password.min_score) == (10, 3)
    assert defaults.web_registration.enabled is True
    pages = GateConfig.parse(
        {
            "branding": {"privacy_url": "/privacy", "intro": "Hello"},
            "clients": [],
            "web_registration": {"client_api_url": "http://127.0.0.1:8008"},
        }
    ).pages
    assert pages.branding.consent_required is True
    assert pages.branding.intro_in("de", "en") == ("Hello", None)
    assert pages.clients == ()
    assert pages.web_registration.client_api_url == "http://127.0.0.1:8008/"
