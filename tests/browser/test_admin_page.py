"""The moderation page in headless Chromium: sign in, decide a pending request,
create an invite token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import confirm_address, register, registered, token_from

SYNAPSE_DATABASES = ["sqlite"]
REASON = "Our hiking group would like to organise trips in a room here."


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "approval": "required",
        "moderators": ["@mod:test.local"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def sign_in(page: Page, synapse: SynapseServer, user: str, password: str) -> None:
    page.goto(synapse.gate_url + "admin")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_moderator_approves_a_request_and_creates_a_token(
    page: Page,
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    screenshot: Callable[[Page, str], Path],
) -> None:
    synapse.register_user("mod", "mod-password-1")
    email = "hiker@example.org"
    answer = http.post(
        synapse.gate_url + "api/request",
        json={"username": "hiker", "email": email, "reason": REASON},
    )
    assert answer.status == 202
    assert confirm_address(synapse, mailbox.wait_for(lambda m: m.to == email)).status == 200

    sign_in(page, synapse, "mod", "mod-password-1")
    row = page.locator("#pending tbody tr", has_text="@hiker")
    expect(row).to_contain_text(REASON)
    screenshot(page, "admin-pending")
    row.get_by_role("button", name="Approve @hiker").click()
    expect(page.locator("#admin-status")).to_contain_text("@hiker: issued")
    token = token_from(mailbox.wait_for(lambda m: m.to == email and "Registration token" in m.text))
    assert registered(register(synapse, "hiker", token))

    page.get_by_label("Uses").fill("3")
    page.get_by_role("button", name="Create invite token").click()
    expect(page.locator("#admin-status")).to_contain_text("Created invite token")
    created = page.locator("#admin-status").inner_text().split()[3]
    expect(page.locator("#tokens tbody")).to_contain_text(created)
    link = f"Invite link: {synapse.gate_url}register?token={created}"
    expect(page.locator("#admin-status")).to_contain_text(link)
    screenshot(page, "admin-token-created")


def test_someone_who_is_not_a_moderator_cannot_use_the_page(
    page: Page, synapse: SynapseServer
) -> None:
    synapse.register_user("walker", "walker-password-1")
    sign_in(page, synapse, "walker", "walker-password-1")
    expect(page.locator("#admin-status")).to_contain_text("Not a moderator")
    expect(page.locator("#work-section")).to_be_hidden()


def test_a_wrong_password_is_refused(page: Page, synapse: SynapseServer) -> None:
    sign_in(page, synapse, "mod", "wrong-password")
    expect(page.locator("#admin-status")).to_contain_text("Not signed in")
