"""The pages in headless Chromium against a real Synapse: the whole journey from
the request form to a logged-in account through the web form, with and without
JavaScript, at phone and desktop widths, light and dark; axe-core finds no
serious or critical violation on any page; every language renders; live username
availability and copy buttons. Screenshots: test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import login, request_token

SYNAPSE_DATABASES = ["sqlite"]
SHOTS = ARTIFACTS / "screenshots"
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
PASSWORD = "quartz meadow lantern ripple"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
LINK = re.compile(r"(http://\S+/register\?token=[A-Za-z0-9]+)")


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "branding": {
            "display_name": "Test Chat",
            "intro": {
                "en": "A small, friendly server for our neighbourhood.",
                "de": "Ein kleiner, freundlicher Server für unsere Nachbarschaft.",
            },
            "rules_url": "https://example.org/rules",
            "privacy_url": "https://example.org/privacy",
        },
        "password": {"min_length": 10, "min_score": 3},
    }


@pytest.fixture(scope="module")
def taken(synapse: SynapseServer) -> str:
    synapse.register_user("taken", "pw-taken-1234567")
    return "taken"


@pytest.fixture(scope="module", autouse=True)
def screenshots_dir() -> Iterator[Path]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield SHOTS


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def axe(page: Page, name: str) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the page's CSP stays as it is.
        page.evaluate(AXE_JS.read_text())
    result = page.evaluate(
        "async () => await window.axe.run(document, {resultTypes: ['violations']})"
    )
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    summary = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:200] for n in v["nodes"]]}
        for v in bad
    ]
    assert not bad, f"axe on {name}:\n{json.dumps(summary, indent=1)}"


def check_page(page: Page, name: str, helper: Page | None = None) -> None:
    """A screenshot, and axe. axe needs JavaScript: for a page without it, ``helper``
    (a page with JavaScript, the same viewport and colours, scripts of the site
    blocked) shows the very same HTML at the same URL, and axe runs there."""
    shot(page, name)
    if helper is None:
        axe(page, name)
        return
    html, url = page.content(), page.url
    helper.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
    helper.goto(url)
    helper.unroute(url)
    axe(helper, name)


@pytest.mark.parametrize(
    ("viewport", "scheme", "javascript"),
    [
        pytest.param(DESKTOP, "light", True, id="desktop-light-js"),
        pytest.param(PHONE, "dark", False, id="phone-dark-nojs"),
    ],
)
def test_the_journey_from_request_to_a_logged_in_account(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    new_page: Callable[..., Page],
    viewport: dict[str, int],
    scheme: str,
    javascript: bool,
) -> None:
    label = f"{'desktop' if viewport is DESKTOP else 'phone'}-{scheme}"
    if not javascript:
        label += "-nojs"
    user = "journey" + ("js" if javascript else "nojs")
    email = f"{user}@example.org"
    page = new_page(
        viewport=viewport,
        color_scheme=scheme,
        java_script_enabled=javascript,
        permissions=["clipboard-read", "clipboard-write"] if javascript else [],
    )

    helper = None
    if not javascript:
        helper = new_page(viewport=viewport, color_scheme=scheme)
        helper.route("**/static/*.js", lambda route: route.abort())

    page.goto(synapse.gate_url)
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    expect(page.get_by_text("A small, friendly server")).to_be_visible()
    check_page(page, f"1-request-{label}", helper)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    check_page(page, f"2-sent-{label}", helper)

    mail = mailbox.wait_for(lambda m: m.to == email)
    match = LINK.search(mail.text)
    assert match, mail.text
    page.goto(match.group(1))
    token = match.group(1).rsplit("=", 1)[1]
    expect(page.locator("#user-id")).to_have_text(f"@{user}:test.local")
    expect(page.locator("#token")).to_have_text(token)
    copy = page.get_by_role("button", name="Copy")
    if javascript:
        expect(copy).to_be_visible()
        copy.click()
        expect(page.locator(".copy-status")).to_have_text("Copied")
        assert page.evaluate("() => navigator.clipboard.readText()") == token
    else:
        expect(copy).to_be_hidden()
    element = page.get_by_role("link", name="Open Element")
    assert "hs_url=http%3A%2F%2F127.0.0.1" in (element.get_attribute("href") or "")
    check_page(page, f"3-landing-{label}", helper)

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD + "!")
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    mismatch = page.locator("#password_confirm-error")
    expect(mismatch).to_contain_text("not the same")
    expect(page.get_by_label("Password again")).to_have_attribute("aria-invalid", "true")
    check_page(page, f"4-form-error-{label}", helper)

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", name="Your account is ready")).to_be_visible()
    expect(page.get_by_text(f"The account @{user}:test.local has been created")).to_be_visible()
    expect(page.get_by_text("Log in with any Matrix client")).to_be_visible()
    check_page(page, f"5-done-{label}", helper)

    logged_in = login(synapse, user, PASSWORD)
    assert logged_in.status == 200, logged_in
    assert logged_in.json()["user_id"] == f"@{user}:test.local"


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [
        pytest.param(PHONE, "light", id="phone-light"),
        pytest.param(DESKTOP, "dark", id="desktop-dark"),
    ],
)
def test_errors_and_other_pages_at_each_width_and_scheme(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    taken: str,
    new_page: Callable[..., Page],
    viewport: dict[str, int],
    scheme: str,
) -> None:
    label = f"{'phone' if viewport is PHONE else 'desktop'}-{scheme}"
    page = new_page(viewport=viewport, color_scheme=scheme)
    page.goto(synapse.gate_url)
    page.get_by_label("Username").fill(taken)
    page.get_by_label("Email address").fill("not-an-address")
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    # consent is checked first: nothing is looked at before it is given
    expect(page.locator("#consent-error")).to_contain_text("tick the box")
    check_page(page, f"request-consent-error-{label}")
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    error = page.locator("#username-error")
    expect(error).to_have_text("This username is already taken. Please choose another.")
    username = page.get_by_label("Username")
    expect(username).to_have_attribute("aria-invalid", "true")
    expect(username).to_have_accessible_description(re.compile("already taken"))
    expect(username).to_have_value(taken)
    check_page(page, f"request-error-{label}")
    # the page is no wider than the screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]

    page.get_by_label("Username").fill("fresh" + scheme)
    # the old error goes, the live check says the name is free
    expect(page.locator("#username-error")).to_be_hidden()
    expect(page.locator("#username-status")).to_contain_text("is free")
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.locator("#username-error")).to_have_count(0)  # one error at a time
    check_page(page, f"request-email-error-{label}")

    token = request_token(synapse, mailbox, f"landing{scheme}", f"landing{scheme}@example.org")
    page.goto(synapse.gate_url + f"register?token={token}")
    check_page(page, f"landing-{label}")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]

    page.goto(synapse.gate_url + "register?token=NOSUCHTOKEN")
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    check_page(page, f"landing-invalid-{label}")


@pytest.mark.parametrize(
    ("lang", "heading", "submit", "username"),
    [
        ("de", "Konto anlegen", "Token zuschicken", "Benutzername"),
        ("fr", "Créer un compte", "M\u2019envoyer un jeton", "Nom d\u2019utilisateur"),
    ],
)
def test_each_language_renders(
    synapse: SynapseServer,
    new_page: Callable[..., Page],
    lang: str,
    heading: str,
    submit: str,
    username: str,
) -> None:
    page = new_page(viewport=PHONE, color_scheme="light")
    page.goto(synapse.gate_url)
    name = {"de": "Deutsch", "fr": "Français"}[lang]
    page.get_by_role("link", name=name).click()
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.get_by_role("button", name=submit)).to_be_visible()
    expect(page.get_by_label(username)).to_be_visible()
    check_page(page, f"request-{lang}")
    # the choice is remembered
    page.goto(synapse.gate_url + "register?token=NOSUCHTOKEN")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    shot(page, f"landing-invalid-{lang}")


def test_live_username_availability(
    synapse: SynapseServer, taken: str, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=DESKTOP, color_scheme="light")
    asked: list[str] = []
    page.on(
        "request",
        lambda r: asked.append(r.url) if "/register/available" in r.url else None,
    )
    page.goto(synapse.gate_url)
    status = page.locator("#username-status")
    expect(status).to_have_attribute("aria-live", "polite")
    field = page.get_by_label("Username")
    field.press_sequentially(taken, delay=30)
    expect(status).to_have_text(
        f"@{taken}:test.local is already taken. Please choose another username."
    )
    assert len(asked) == 1, asked  # typed letter by letter, asked once: debounced
    field.fill("")
    field.press_sequentially("@NewPerson:test.local", delay=10)
    expect(status).to_have_text("@newperson:test.local is free.")
    field.fill("bad name!")
    expect(status).to_contain_text("cannot be used")
    expect(field).to_have_accessible_description(re.compile("cannot be used"))
    shot(page, "request-availability")


def test_keyboard_order_and_visible_focus(
    synapse: SynapseServer, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=DESKTOP, color_scheme="dark")
    page.goto(synapse.gate_url)
    order = []
    for _ in range(7):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return e.id || e.getAttribute('type') || e.textContent.trim(); }"
            )
        )
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"no visible focus on {order[-1]}"
    assert order[:6] == [
        "username",
        "email",
        "consent",
        "Server rules",
        "Privacy policy",
        "submit",
    ], order
    shot(page, "request-focus")
