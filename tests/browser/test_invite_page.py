"""An invite link in headless Chromium against a real Synapse: the person opens
the link, picks a username (a taken one is named next to the field, with the
live availability check), a password twice, and ends with an account that logs
in; the used-up link then says it does not work. axe-core finds no serious or
critical violation on the invite page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_pages import axe
from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import login

SYNAPSE_DATABASES = ["sqlite"]
PASSWORD = "saffron glacier puzzle hammock"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "password": {"min_length": 10, "min_score": 3},
        "branding": {"terms_url": "https://example.org/terms"},
    }


def invite_link(synapse: SynapseServer, admin_token: str) -> str:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 1, "expiry": "2d"},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    link: str = made.json()["link"]
    return link


def test_an_invite_link_makes_an_account_in_the_browser(
    synapse: SynapseServer,
    admin_token: str,
    page: Page,
    screenshot: Callable[[Page, str], Path],
) -> None:
    synapse.register_user("browsertaken", "browser-taken-password-1")
    link = invite_link(synapse, admin_token)
    page.goto(link)
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    expect(page.get_by_text("You have been invited to test.local")).to_be_visible()
    axe(page, "invite")
    screenshot(page, "invite")

    page.get_by_label("Username").fill("browsertaken")
    expect(page.locator("#username-status")).to_contain_text("taken")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    expect(page.locator("#username-error")).to_contain_text("already taken")
    expect(page.get_by_label("Username")).to_have_value("browsertaken")
    screenshot(page, "invite-username-taken")

    page.get_by_label("Username").fill("browserinvitee")
    expect(page.locator("#username-status")).to_contain_text("is free")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("I have read and accept").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", name="Your account is ready")).to_be_visible()
    expect(page.get_by_text("@browserinvitee:test.local").first).to_be_visible()
    screenshot(page, "invite-done")
    logged_in = login(synapse, "browserinvitee", PASSWORD)
    assert logged_in.status == 200, logged_in

    page.goto(link)
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.locator("input[name=password]")).to_have_count(0)
