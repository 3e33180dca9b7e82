"""The mails (mail/compose.py and the shipped templates) in every language."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest

from synapse_email_gate.config.i18n import Translations
from synapse_email_gate.mail.compose import MAIL_KINDS, MailComposer
from synapse_email_gate.storage.outbox import MailFacts

TEMPLATES = Path(__file__).resolve().parents[3] / "synapse_email_gate" / "templates"
SHIPPED = ("en", "de", "fr")


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
    if kind == "notification":
        line = "New account @alice:example.org: made with a mailed token"
        extra = {"subject": f"[example.org] {line}", "message": f"{line} <b>\n"}
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
    if kind in ("notice", "notification"):
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
