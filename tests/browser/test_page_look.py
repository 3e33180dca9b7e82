"""The page's look in headless Chromium against a real Synapse: the configured logo and
favicon load from the module, the theme's colours are what the page computes, and
the browser meets no 404 and no console error, with a favicon configured and without
one (then the built-in favicon, never /favicon.ico)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response

from tests.harness.synapse import SynapseServer

SYNAPSE_DATABASES = ["sqlite"]


def _png(width: int, height: int) -> bytes:
    """A plain PNG: the logo must decode, not only arrive."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xd3\x86\x9b" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(2, 2)
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#d3869b"/></svg>'
)


@pytest.fixture(scope="module")
def gate_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("brand")
    (folder / "logo.png").write_bytes(PNG)
    (folder / "icon.svg").write_text(SVG)
    return {
        "branding": {
            "logo_file": str(folder / "logo.png"),
            "favicon_file": str(folder / "icon.svg"),
        },
        "theme": {
            "preset": "gruvbox-dark",
            "colours": {"background": "#112233", "accent": "#d3869b"},
        },
    }


def _open(page: Page, url: str, icon_path: str) -> tuple[list[Response], Response]:
    """Load the page; every answer it got, and the favicon's."""
    answers: list[Response] = []
    page.on("response", lambda answer: answers.append(answer))
    with page.expect_response(lambda r: icon_path in r.url, timeout=15_000) as icon:
        page.goto(url)
    page.wait_for_load_state("networkidle")
    return answers, icon.value


def _no_failures(page: Page, answers: list[Response]) -> None:
    failed = [f"{r.status} {r.url}" for r in answers if r.status >= 400]
    assert failed == []
    assert not [r.url for r in answers if r.url.endswith("/favicon.ico")]
    log: list[str] = page.page_log  # type: ignore[attr-defined]
    assert [line for line in log if line.startswith(("error:", "pageerror:"))] == []


def test_logo_favicon_and_theme_load_without_a_404(
    synapse: SynapseServer, page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    answers, icon = _open(page, synapse.gate_url, "/static/favicon-")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert page.locator("link[rel=icon]").get_attribute("type") == "image/svg+xml"
    logo = page.locator("img.logo")
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 2
    _no_failures(page, answers)
    colours = page.evaluate(
        """() => {
          const body = getComputedStyle(document.body);
          const button = getComputedStyle(document.querySelector("button[type=submit]"));
          return {background: body.backgroundColor, text: body.color,
                  button: button.backgroundColor,
                  scheme: getComputedStyle(document.documentElement).colorScheme};
        }"""
    )
    assert colours == {
        "background": "rgb(17, 34, 51)",  # #112233, configured
        "text": "rgb(235, 219, 178)",  # #ebdbb2, the gruvbox-dark preset's
        "button": "rgb(211, 134, 155)",  # #d3869b, configured
        "scheme": "dark",
    }
    screenshot(page, "themed")


def test_without_a_favicon_the_page_uses_the_built_in_one(
    make_synapse: Callable[..., SynapseServer], new_page: Callable[..., Page]
) -> None:
    plain = make_synapse({})
    page = new_page(color_scheme="light")
    answers, icon = _open(page, plain.gate_url, "/static/email_gate_favicon.svg")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert page.locator("img.logo").count() == 0
    _no_failures(page, answers)
    # The default theme is the stylesheet's own gruvbox: no theme stylesheet at all.
    assert page.locator("link[rel=stylesheet]").count() == 1
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(235, 219, 178)"  # gruvbox light bg1


def test_colours_over_the_default_preset_follow_the_scheme(
    make_synapse: Callable[..., SynapseServer], new_page: Callable[..., Page]
) -> None:
    themed = make_synapse(
        {
            "theme": {
                "colours": {"background": "#fbf1c7", "accent": "#8f3f71"},
                "dark_colours": {"background": "#32302f"},
            }
        }
    )
    seen = {}
    for scheme in ("light", "dark"):
        page = new_page(color_scheme=scheme)
        page.goto(themed.gate_url)
        seen[scheme] = page.evaluate(
            """() => [getComputedStyle(document.body).backgroundColor,
                      getComputedStyle(document.querySelector("button[type=submit]")).backgroundColor,
                      getComputedStyle(document.body).color]"""
        )
    assert seen == {
        # background and accent configured; the text is the preset's, per scheme
        "light": ["rgb(251, 241, 199)", "rgb(143, 63, 113)", "rgb(60, 56, 54)"],
        "dark": ["rgb(50, 48, 47)", "rgb(143, 63, 113)", "rgb(235, 219, 178)"],
    }
