"""Languages and overrides against a real Synapse: the page follows ?lang=, its
cookie and Accept-Language; the mail is written in the language of the request;
an admin's translation file and custom_template_directory are picked up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import CSRF_FIELD, ask

SYNAPSE_DATABASES = ["sqlite"]


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    translations = root / "translations"
    translations.mkdir()
    (translations / "nl.yaml").write_text(
        "language:\n  name: Nederlands\n"
        "request:\n  title: Account aanmaken\n  submit: Stuur me een token\n"
    )
    templates = root / "templates"
    templates.mkdir()
    # An admin's own "sent" page and token mail subject, through Synapse's
    # custom_template_directory; the other templates stay the module's.
    (templates / "email_gate_request_sent.html").write_text(
        '{% extends "email_gate_base.html" %}\n'
        "{% block heading %}Nearly there!{% endblock %}\n"
        '{% block content %}<p id="custom">Custom page of {{ server_name }} '
        "({{ lang }}): {{ _('sent.title') }}</p>{% endblock %}\n"
    )
    (templates / "email_gate_token_subject.txt").write_text(
        "[{{ server_name }}] {{ _('mail.token.subject', server=display_name) }} (custom)\n"
    )
    return root


@pytest.fixture(scope="module")
def gate_config(site_dir: Path) -> dict[str, Any]:
    return {
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "translations_dir": str(site_dir / "translations"),
        "branding": {"display_name": "Test Chat"},
    }


@pytest.fixture(scope="module")
def synapse_extra(site_dir: Path) -> dict[str, Any]:
    return {"templates": {"custom_template_directory": str(site_dir / "templates")}}


def form(
    synapse: SynapseServer, query: str = "", **headers: str
) -> tuple[http.Response, str, dict[str, str]]:
    page = http.get(synapse.gate_url + query, headers=headers or None)
    assert page.status == 200, page
    match = CSRF_FIELD.search(page.text)
    assert match
    return page, match.group(1), page.cookies


def test_accept_language_chooses_the_page_language(synapse: SynapseServer) -> None:
    de, _, _ = form(synapse, **{"Accept-Language": "de-CH, de;q=0.9, en;q=0.5"})
    assert '<html lang="de"' in de.text
    assert "Benutzername" in de.text and "Token zuschicken" in de.text
    fr, _, _ = form(synapse, **{"Accept-Language": "fr"})
    assert "Nom d\u2019utilisateur" in fr.text and "M\u2019envoyer un jeton" in fr.text
    en, _, _ = form(synapse, **{"Accept-Language": "es, it"})
    assert '<html lang="en"' in en.text and "Send me a token" in en.text


def test_the_language_switch_sets_a_cookie_that_wins_over_accept_language(
    synapse: SynapseServer,
) -> None:
    page, _, cookies = form(synapse, "?lang=fr", **{"Accept-Language": "de"})
    assert '<html lang="fr"' in page.text
    assert cookies.get("email_gate_lang") == "fr"
    assert 'href="/_synapse/client/email_gate/?lang=de"' in page.text
    again = http.get(
        synapse.gate_url, headers={"Accept-Language": "de"}, cookies={"email_gate_lang": "fr"}
    )
    assert '<html lang="fr"' in again.text
    bogus = http.get(synapse.gate_url + "?lang=%3Cb%3E")
    assert '<html lang="en"' in bogus.text and "email_gate_lang" not in bogus.cookies


def test_an_admins_language_file_adds_a_language(synapse: SynapseServer) -> None:
    page, _, _ = form(synapse, "?lang=nl")
    assert '<html lang="nl"' in page.text
    assert "Account aanmaken" in page.text and "Stuur me een token" in page.text
    assert "Email address" in page.text  # not translated: English
    assert ">Nederlands</a>" in page.text


def test_a_german_form_post_gets_german_errors_and_a_german_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    synapse.register_user("taken", "pw-taken-12345")
    _, csrf, cookies = form(synapse, **{"Accept-Language": "de"})
    taken = http.post(
        synapse.gate_url,
        form={"username": "taken", "email": "t@example.org", "csrf": csrf, "lang": "de"},
        cookies=cookies,
    )
    assert taken.status == 400
    assert 'id="username-error"' in taken.text
    assert "Dieser Benutzername ist schon vergeben" in taken.text

    sent = http.post(
        synapse.gate_url,
        form={"username": "greta", "email": "greta@example.org", "csrf": csrf, "lang": "de"},
        cookies=cookies,
    )
    assert sent.status == 202
    mail = mailbox.wait_for(lambda m: m.to == "greta@example.org")
    assert "Hallo," in mail.text and "Registrierungs-Token" in mail.text
    assert "@greta:test.local" in mail.text and "token=" in mail.text
    assert mail.html is not None and 'lang="de"' in mail.html
    assert synapse.query("SELECT lang FROM email_gate_requests WHERE localpart = 'greta'") == [
        ("de",)
    ]


def test_the_api_takes_the_language_from_accept_language(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    answer = ask(synapse, "francois", "francois@example.org", **{"Accept-Language": "fr-FR"})
    assert answer.status == 202
    mail = mailbox.wait_for(lambda m: m.to == "francois@example.org")
    assert "Bonjour," in mail.text and "Jeton d\u2019inscription" in mail.text
    assert "@francois:test.local" in mail.text


def test_custom_templates_are_picked_up(synapse: SynapseServer, mailbox: SmtpCatcher) -> None:
    _, csrf, cookies = form(synapse)
    sent = http.post(
        synapse.gate_url,
        form={"username": "custom", "email": "custom@example.org", "csrf": csrf},
        cookies=cookies,
    )
    assert sent.status == 202
    assert '<p id="custom">Custom page of test.local (en): Check your inbox</p>' in sent.text
    assert "Nearly there!" in sent.text
    assert "email_gate.css" in sent.text  # the module's base template still frames it
    mail = mailbox.wait_for(lambda m: m.to == "custom@example.org")
    assert mail.subject == "[test.local] Your registration token for Test Chat (custom)"
    assert "Registration token:" in mail.text  # the body is still the module's
