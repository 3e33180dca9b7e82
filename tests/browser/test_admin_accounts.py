"""The Accounts section of the moderation page in headless Chromium: find the
accounts of a wave by their address domain, dry run a lock (nothing changes),
confirm it (Synapse refuses their access tokens), and axe finds no serious problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_admin_page import sign_in
from tests.browser.test_pages import axe
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.accounts_helpers import gate_account

SYNAPSE_DATABASES = ["sqlite"]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "moderators": ["@mod:test.local"],
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def test_a_moderator_finds_a_wave_and_locks_it_after_a_dry_run(
    page: Page,
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    screenshot: Callable[[Page, str], Path],
) -> None:
    synapse.register_user("mod", "mod-password-1")
    wave = [
        gate_account(synapse, mailbox, f"pagewave{n}", f"p{n}@pagewave.example", f"192.0.2.{n}")
        for n in (1, 2)
    ]
    bystander = gate_account(synapse, mailbox, "bystander", "b@elsewhere.example", "192.0.2.9")

    sign_in(page, synapse, "mod", "mod-password-1")
    expect(page.locator("#work-section")).to_be_visible()
    page.get_by_label("Address domain").fill("pagewave.example")
    page.get_by_role("button", name="Find accounts").click()
    rows = page.locator("#accounts tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#accounts tbody")).to_contain_text("p1@pagewave.example")
    expect(page.locator("#accounts tbody")).to_contain_text("192.0.2.2")
    expect(page.locator("#accounts tbody")).not_to_contain_text(bystander.user_id)

    page.get_by_label("Action on the accounts found").select_option("lock")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#accounts-preview")).to_contain_text("lock would change 2 account(s)")
    assert all(c.whoami().status == 200 for c in wave)
    axe(page, "admin-accounts-dry-run")
    screenshot(page, "admin-accounts-dry-run")

    page.get_by_role("button", name="Confirm: lock 2 account(s)").click()
    expect(page.locator("#admin-status")).to_contain_text("lock: changed 2 account(s)")
    expect(page.locator("#accounts tbody tr").first).to_contain_text("locked")
    for client in wave:
        assert client.whoami().json()["errcode"] == "M_USER_LOCKED"
    assert bystander.whoami().status == 200
    screenshot(page, "admin-accounts-locked")
