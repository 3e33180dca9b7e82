"""Where the pages are (web/pages.py PageKit): below public_baseurl, or on the sign-up
origin of `public_url`, whose path every link, form action and cookie then takes;
and the files the config makes, each under a name that changes with its content."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from synapse.module_api import ModuleApi

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.i18n import Translations
from synapse_email_gate.web.pages import PageKit


class _Api:
    server_name = "example.org"
    public_baseurl = "https://matrix.example.org/"


def _kit(config: dict[str, Any], translations: Translations) -> PageKit:
    pages = GateConfig.parse(config).pages
    return PageKit(cast(ModuleApi, _Api()), pages, translations)


def test_the_pages_default_to_their_path_below_public_baseurl(translations: Translations) -> None:
    kit = _kit({}, translations)
    assert kit.page_url == "https://matrix.example.org/_synapse/client/email_gate/"
    assert (kit.base_path, kit.cookie_path) == (
        "/_synapse/client/email_gate",
        "/_synapse/client/email_gate/",
    )
    variables = kit.variables("en", "/register", {"token": "abc"})
    assert variables["base_path"] == "/_synapse/client/email_gate"
    assert variables["favicon_url"] == "/_synapse/client/email_gate/static/email_gate_favicon.svg"
    assert variables["theme_url"] is None
    assert variables["languages"][0]["url"].startswith(
        "/_synapse/client/email_gate/register?token=abc&lang="
    )


def test_public_url_moves_links_and_cookies_to_its_path(translations: Translations) -> None:
    kit = _kit({"public_url": "http://join.example.org/signup"}, translations)
    assert kit.page_url == "http://join.example.org/signup/"
    assert (kit.base_path, kit.cookie_path, kit.secure) == ("/signup", "/signup/", False)
    variables = kit.variables("en")
    assert variables["base_path"] == "/signup"
    assert variables["favicon_url"] == "/signup/static/email_gate_favicon.svg"
    assert all(lang["url"].startswith("/signup/?lang=") for lang in variables["languages"])
    # The moderation page stays on the homeserver.
    assert kit.admin_variables()["base_path"] == "/_synapse/client/email_gate"
    root = _kit({"public_url": "https://join.example.org/"}, translations)
    assert (root.base_path, root.cookie_path, root.secure) == ("", "/", True)


def test_config_files_are_served_under_names_of_their_content(
    tmp_path: Path, translations: Translations
) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 20)
    kit = _kit(
        {
            "public_url": "https://join.example.org/",
            "branding": {"logo_file": str(logo), "logo_url": "/old.png"},
            "theme": {"colours": {"accent": "#b16286"}},
        },
        translations,
    )
    variables = kit.variables("en")
    logo_name = variables["logo_url"].removeprefix("/static/")
    theme_name = variables["theme_url"].removeprefix("/static/")
    assert set(kit.assets) == {logo_name, theme_name}
    assert kit.assets[logo_name].content_type == "image/png"
    assert b"--accent: #b16286;" in kit.assets[theme_name].body
    assert kit.assets[theme_name].headers["Cache-Control"] == "public, max-age=31536000, immutable"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x02" * 20)
    changed = _kit({"branding": {"logo_file": str(logo)}}, translations)
    (changed_name,) = changed.assets
    assert changed_name.startswith("logo-") and changed_name != logo_name
