"""The request page with the challenge on, in headless Chromium against a real Synapse:
the page solves the proof-of-work in Web Workers and posts the form; a mail arrives."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PageLog
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import quiet

SYNAPSE_DATABASES = ["sqlite"]
DIFFICULTY = 12


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "challenge": {"enabled": True, "difficulty": DIFFICULTY},
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def used_challenges(synapse: SynapseServer) -> int:
    return int(synapse.query("SELECT COUNT(*) FROM email_gate_used_challenges")[0][0])


def test_the_page_solves_the_challenge_and_the_mail_arrives(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    page: Page,
    page_log: PageLog,
    screenshot: Callable[[Page, str], Path],
) -> None:
    page.goto(synapse.gate_url)
    status = page.locator("#challenge-status")
    expect(status).to_be_visible()
    expect(page.locator("#challenge-progress")).to_be_visible()
    page.get_by_label("Username").fill("browser")
    page.get_by_label("Email address").fill("browser@example.org")
    screenshot(page, "1-filled")
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    expect(page.get_by_text("Check your inbox")).to_be_visible()
    screenshot(page, "2-sent")

    mail = mailbox.wait_for(lambda m: m.to == "browser@example.org")
    assert "@browser:test.local" in mail.text
    assert used_challenges(synapse) >= 1
    assert page_log.errors() == []


def test_keyboard_only_submit_waits_for_the_solution_and_shows_progress(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    page: Page,
    page_log: PageLog,
    screenshot: Callable[[Page, str], Path],
) -> None:
    # Slow the solver down so the progress is seen: hold the challenge answer back.
    held: list[Any] = []
    page.route("**/api/challenge", lambda route: held.append(route))
    page.goto(synapse.gate_url)
    page.keyboard.press("Tab")  # the first field
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("keyboard")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard@example.org")
    page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Send me a token")
    expect(button).to_be_focused()
    expect(button).to_have_accessible_description(re.compile("anti-spam", re.I))
    page.keyboard.press("Enter")
    expect(page.locator("#challenge-status")).to_contain_text("Solving")
    expect(page.locator("form")).to_have_attribute("aria-busy", "true")
    expect(button).to_have_attribute("aria-disabled", "true")
    screenshot(page, "1-solving")
    page.keyboard.press("Enter")  # a second press does not send twice
    assert len(held) == 1, "the page should ask for one challenge"
    with page.expect_navigation():
        held[0].continue_()
    expect(page.get_by_text("Check your inbox")).to_be_visible()
    mailbox.wait_for(lambda m: m.to == "keyboard@example.org")
    assert quiet(mailbox, 0.5) == []  # sent once
    assert page_log.errors() == []


def test_without_javascript_the_page_says_so_and_nothing_is_sent(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    new_page: Callable[..., Page],
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = new_page(java_script_enabled=False)
    page.goto(synapse.gate_url)
    notice = page.locator("#challenge-noscript")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("needs JavaScript")
    expect(page.locator("#challenge")).to_be_hidden()
    screenshot(page, "noscript")
    page.get_by_label("Username").fill("nojs")
    page.get_by_label("Email address").fill("nojs@example.org")
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    expect(page.locator("#form-error")).to_contain_text("JavaScript")
    expect(page.get_by_label("Username")).to_have_value("nojs")
    assert quiet(mailbox, 1.0) == []
