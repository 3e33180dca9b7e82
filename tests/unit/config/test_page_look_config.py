"""The look of the pages in the config: legal documents (and their older spelling), the
logo and favicon files, the theme, the sign-up origin; each bad value refused naming
its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.brand_files import MAX_IMAGE_BYTES, image_type
from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.pages import LegalDocument

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>'


def test_legal_documents_are_a_list_with_titles_per_language() -> None:
    branding = GateConfig.parse(
        {
            "branding": {
                "legal_documents": [
                    {"title": "Terms of service", "url": "https://example.org/tos"},
                    {"title": {"en": "Code of conduct", "de": "Verhaltenskodex"}, "url": "/coc"},
                ]
            }
        }
    ).pages.branding
    assert branding.consent_required is True
    tos, coc = branding.legal_documents
    assert (tos.url, tos.title_in("de", "en")) == (
        "https://example.org/tos",
        ("Terms of service", None),
    )
    assert coc.title_in("de", "en") == ("Verhaltenskodex", "de")
    assert coc.title_in("fr", "en") == ("Code of conduct", "en")


def test_the_older_keys_become_documents_before_the_list() -> None:
    branding = GateConfig.parse(
        {
            "branding": {
                "privacy_url": "https://example.org/privacy",
                "rules_url": "https://example.org/rules",
                "legal_documents": [{"title": "Imprint", "url": "https://example.org/imprint"}],
                "consent_required": False,
            }
        }
    ).pages.branding
    assert branding.legal_documents == (
        LegalDocument(url="https://example.org/rules", key="rules"),
        LegalDocument(url="https://example.org/privacy", key="privacy"),
        LegalDocument(url="https://example.org/imprint", title={"*": "Imprint"}),
    )
    assert branding.consent_required is False


def test_theme_presets_and_colours_make_the_stylesheet() -> None:
    default = GateConfig.parse({}).pages.theme
    assert (default.preset, default.stylesheet()) == ("gruvbox", "")
    dark = GateConfig.parse(
        {"theme": {"preset": "gruvbox-dark", "colours": {"accent": "#FABD2F"}}}
    ).pages.theme
    css = dark.stylesheet()
    assert "color-scheme: dark;" in css
    assert "--bg: #282828;" in css
    assert "--accent: #fabd2f;" in css and "--accent: #83a598" not in css
    assert dark.stylesheet_name().startswith("theme-") and dark.stylesheet_name().endswith(".css")
    auto = GateConfig.parse(
        {"theme": {"colours": {"background": "#fff"}, "dark_colours": {"background": "#000"}}}
    ).pages.theme
    light_part, dark_part = auto.stylesheet().split("@media (prefers-color-scheme: dark)")
    assert "--bg: #fff;" in light_part and "--bg: #000;" in dark_part
    assert auto.stylesheet_name() != dark.stylesheet_name()


def test_logo_and_favicon_files_are_read_at_start_up(tmp_path: Path) -> None:
    logo, icon = tmp_path / "logo.png", tmp_path / "favicon.svg"
    logo.write_bytes(PNG)
    icon.write_bytes(SVG)
    branding = GateConfig.parse(
        {"branding": {"logo_file": str(logo), "favicon_file": str(icon)}}
    ).pages.branding
    assert branding.logo_file is not None and branding.favicon_file is not None
    assert (branding.logo_file.content_type, branding.logo_file.body) == ("image/png", PNG)
    assert branding.logo_file.name.startswith("logo-") and branding.logo_file.name.endswith(".png")
    assert branding.favicon_file.content_type == "image/svg+xml"


@pytest.mark.parametrize(
    ("body", "extension", "expected"),
    [
        (PNG, ".ico", "image/png"),  # the content wins over the name
        (b"\xff\xd8\xff\xe0rest", ".bin", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ".webp", "image/webp"),
        (b"\x00\x00\x01\x00\x01\x00", ".ico", "image/x-icon"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            ".xml",
            "image/svg+xml",
        ),
        (b"<!-- made by hand -->\n<svg/>", ".svg", "image/svg+xml"),
        (b"GIF89a....", ".gif", "image/gif"),
        (b"just text", ".png", None),
        (b"<html><svg/></html>", ".html", None),
    ],
)
def test_image_types_come_from_the_content_or_the_extension(
    body: bytes, extension: str, expected: str | None
) -> None:
    assert image_type(body, extension) == expected


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "text": tmp_path / "logo.png",
        "empty": tmp_path / "empty.svg",
        "big": tmp_path / "big.png",
    }
    files["text"].write_text("not an image")
    files["empty"].write_bytes(b"")
    files["big"].write_bytes(PNG + b"\x00" * MAX_IMAGE_BYTES)
    return files


@pytest.mark.parametrize(
    ("key", "which", "error"),
    [
        ("logo_file", "missing", r"^branding\.logo_file: .* is not a file"),
        ("logo_file", "text", r"^branding\.logo_file: .* is not an image of a known type"),
        ("favicon_file", "empty", r"^branding\.favicon_file: .* is empty"),
        ("favicon_file", "big", r"^branding\.favicon_file: .* bytes; at most 524288"),
    ],
)
def test_bad_image_files_are_refused_naming_the_key(
    tmp_path: Path, key: str, which: str, error: str
) -> None:
    files = _bad_files(tmp_path)
    path = files.get(which, tmp_path / "missing.png")
    with pytest.raises(ConfigError, match=error):
        GateConfig.parse({"branding": {key: str(path)}})


def test_public_url_is_the_page_base() -> None:
    assert GateConfig.parse({}).pages.public_url is None
    pages = GateConfig.parse({"public_url": "https://join.example.org"}).pages
    assert pages.public_url == "https://join.example.org/"


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            {"branding": {"legal_documents": {"title": "x"}}},
            r"^branding\.legal_documents: expected a list",
        ),
        (
            {"branding": {"legal_documents": [{"title": "Terms"}]}},
            r"^branding\.legal_documents: item 0: expected \{title",
        ),
        (
            {"branding": {"legal_documents": [{"title": "T", "url": "javascript:alert(1)"}]}},
            r"^branding\.legal_documents: item 0: url: expected an https:// URL",
        ),
        (
            {"branding": {"legal_documents": [{"title": "T", "url": "ftp://example.org/t"}]}},
            r"^branding\.legal_documents: item 0: url: ",
        ),
        (
            {"branding": {"legal_documents": [{"title": "", "url": "https://example.org/"}]}},
            r"^branding\.legal_documents: item 0: title: must not be empty",
        ),
        (
            {"branding": {"legal_documents": [{"title": {"english": "T"}, "url": "/t"}]}},
            r"^branding\.legal_documents: item 0: title: expected a language code",
        ),
        (
            {"branding": {"legal_documents": [{"title": {"en": "a\nb"}, "url": "/t"}]}},
            r"^branding\.legal_documents: item 0: title: must be one line",
        ),
        (
            {"branding": {"consent_required": True}},
            r"^branding\.consent_required: needs at least one",
        ),
        ({"theme": {"preset": "solarized"}}, r"^theme\.preset: must be one of gruvbox, "),
        (
            {"theme": {"colours": {"background": "red"}}},
            r"^theme\.colours: background: expected a hex",
        ),
        ({"theme": {"colours": {"background": "#12345"}}}, r"^theme\.colours: background: "),
        (
            {"theme": {"colours": {"backdrop": "#123456"}}},
            r"^theme\.colours: unknown colour 'backdrop'",
        ),
        (
            {"theme": {"preset": "gruvbox-dark", "dark_colours": {"text": "#fff"}}},
            r"^theme\.dark_colours: only for a preset with a light and a dark",
        ),
        ({"theme": {"font": "serif"}}, r"^theme\.font: unknown key"),
        ({"public_url": "join.example.org"}, r"^public_url: expected a URL"),
        ({"public_url": "https://join.example.org/?a=1"}, r"^public_url: expected a URL"),
        ({"public_url": "https://join.example.org/#x"}, r"^public_url: expected a URL"),
    ],
)
def test_bad_look_settings_are_refused_naming_the_key(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        GateConfig.parse(config)
