"""The pages' look against a real Synapse: the legal documents (titles escaped, per
language) with the consent box on the request page and on the landing page, the
logo and favicon files served by the module with their types and cache headers,
and the theme's stylesheet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.synapse import SynapseServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
ICO = b"\x00\x00\x01\x00\x01\x00" + bytes(range(40))
TERMS = "https://example.org/terms?a=1&b=2"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("brand")
    logo, icon = folder / "server-logo.png", folder / "favicon.ico"
    logo.write_bytes(PNG)
    icon.write_bytes(ICO)
    return {"logo": logo, "favicon": icon}


@pytest.fixture(scope="module")
def gate_config(images: dict[str, Path]) -> dict[str, Any]:
    return {
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "branding": {
            "logo_file": str(images["logo"]),
            "favicon_file": str(images["favicon"]),
            "legal_documents": [
                {"title": "Terms <b>& conditions</b>", "url": TERMS},
                {
                    "title": {"en": "Code of conduct", "de": "Verhaltenskodex"},
                    "url": "https://example.org/coc",
                },
            ],
        },
        "theme": {"preset": "gruvbox-dark", "colours": {"accent": "#d3869b"}},
    }


def _links(html: str) -> list[tuple[str, str]]:
    return re.findall(
        r'<a href="(https://example\.org/[^"]*)" rel="noopener"[^>]*>([^<]*)</a>', html
    )


def test_the_documents_are_shown_with_the_consent_box_titles_escaped(
    synapse: SynapseServer,
) -> None:
    page = http.get(synapse.gate_url)
    assert page.status == 200, page
    html = page.text
    assert 'name="consent"' in html  # documents listed: consent is required by default
    consent_box = html.split('name="consent"', 1)[1].split("</div>", 1)[0]
    expected = [
        ("https://example.org/terms?a=1&amp;b=2", "Terms &lt;b&gt;&amp; conditions&lt;/b&gt;"),
        ("https://example.org/coc", "Code of conduct"),
    ]
    assert _links(consent_box) == expected
    assert "<b>" not in html
    footer = html.split('<footer class="footer">', 1)[1]
    assert _links(footer)[:2] == expected

    german = http.get(synapse.gate_url + "?lang=de").text
    assert ("https://example.org/coc", "Verhaltenskodex") in _links(german)
    # A title for every language carries no lang attribute of its own.
    assert re.search(r'href="https://example\.org/terms[^"]*" rel="noopener">', german)


def test_the_form_is_refused_without_consent(synapse: SynapseServer) -> None:
    page = http.get(synapse.gate_url)
    (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', page.text)
    cookies = {"email_gate_csrf": page.cookies["email_gate_csrf"]}
    fields = {"csrf": csrf, "lang": "en", "username": "lookalice", "email": "la@example.org"}
    refused = http.post(synapse.gate_url, form=fields, cookies=cookies)
    assert refused.status == 400, refused
    assert 'id="consent-error"' in refused.text
    accepted = http.post(synapse.gate_url, form={**fields, "consent": "yes"}, cookies=cookies)
    assert accepted.status == 202, accepted
    assert 'id="consent-error"' not in accepted.text


def test_the_landing_page_of_an_invite_shows_the_documents(
    synapse: SynapseServer, admin_token: str
) -> None:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    landing = http.get(made.json()["link"])
    assert landing.status == 200, landing
    assert 'name="consent"' in landing.text
    consent_box = landing.text.split('name="consent"', 1)[1].split("</div>", 1)[0]
    assert ("https://example.org/coc", "Code of conduct") in _links(consent_box)


def test_logo_favicon_and_theme_are_served_by_the_module(synapse: SynapseServer) -> None:
    html = http.get(synapse.gate_url).text
    (logo,) = re.findall(r'<img class="logo" src="([^"]+)"', html)
    (icon,) = re.findall(r'<link rel="icon" href="([^"]+)" type="image/x-icon">', html)
    (theme,) = re.findall(
        r'<link rel="stylesheet" href="([^"]*/static/theme-[0-9a-f]+\.css)">', html
    )
    assert re.fullmatch(r"/_synapse/client/email_gate/static/logo-[0-9a-f]{12}\.png", logo)
    origin = synapse.gate_url.split("/_synapse/", 1)[0]
    for path, content_type, body in ((logo, "image/png", PNG), (icon, "image/x-icon", ICO)):
        served = http.get(origin + path)
        assert served.status == 200, served
        assert served.header("Content-Type") == content_type
        assert served.body == body
        assert served.header("Cache-Control") == "public, max-age=31536000, immutable"
        assert "sandbox" in (served.header("Content-Security-Policy") or "")
        assert served.header("X-Content-Type-Options") == "nosniff"
    css = http.get(origin + theme)
    assert css.status == 200, css
    assert css.header("Content-Type") == "text/css; charset=utf-8"
    assert "color-scheme: dark;" in css.text and "--accent: #d3869b;" in css.text
    missing = http.get(synapse.gate_url + "static/logo-000000000000.png")
    assert missing.status == 404, missing
