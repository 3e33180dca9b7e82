"""A word token read aloud, typed by hand in headless Chromium: the page without a
token asks for one, takes it with capitals and spaces, and leads to the invite
form, which makes the account. axe-core finds no serious or critical violation
on the page that asks. The moderation page makes word tokens too."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from synapse_email_gate.rules.words import wordlist
from tests.browser.test_pages import axe
from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import login

SYNAPSE_DATABASES = ["sqlite"]
PASSWORD = "saffron glacier puzzle hammock"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {"rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}}}


def test_a_word_token_typed_by_hand_leads_to_the_invite_form(
    synapse: SynapseServer,
    admin_token: str,
    page: Page,
    screenshot: Callable[[Page, str], Path],
) -> None:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"style": "words", "words": 4, "uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    token: str = made.json()["token"]

    page.goto(synapse.gate_url + "register")
    expect(page.get_by_role("heading", name="Have a token?")).to_be_visible()
    axe(page, "enter-token")
    screenshot(page, "enter-token")
    page.get_by_label("Registration token").fill(" ".join(w.upper() for w in token.split("-")))
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.get_by_label("Username").fill("browserwords")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", name="Your account is ready")).to_be_visible()
    assert login(synapse, "browserwords", PASSWORD).status == 200


def test_the_moderation_page_makes_a_word_token(
    synapse: SynapseServer, page: Page, screenshot: Callable[[Page, str], Path]
) -> None:
    synapse.register_user("wordpagemod", "wordpagemod-password-1", admin=True)
    page.goto(synapse.gate_url + "admin")
    page.get_by_label("Username").fill("wordpagemod")
    page.get_by_label("Password").fill("wordpagemod-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Words to read aloud").check()
    page.get_by_role("button", name="Create invite token").click()
    expect(page.locator("#admin-status")).to_contain_text("Created invite token")
    created = page.locator("#admin-status").inner_text().split()[3]
    assert re.fullmatch(r"[a-z]{3,8}(-[a-z]{3,8}){4}", created), created
    assert all(word in wordlist() for word in created.split("-"))
    expect(page.locator("#tokens tbody")).to_contain_text(created)
    screenshot(page, "admin-word-token")
