"""The surge section of the moderation page in headless Chromium: it shows the
state, and a moderator switches the surge on and off from it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_admin_page import sign_in
from tests.harness import http
from tests.harness.synapse import SynapseServer

SYNAPSE_DATABASES = ["sqlite"]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {"moderators": ["@mod:test.local"]}


def surge_on(synapse: SynapseServer, token: str) -> bool:
    answer = http.get(
        synapse.gate_url + "admin/surge", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, answer
    return bool(answer.json()["on"])


def test_a_moderator_sees_and_switches_the_surge(page: Page, synapse: SynapseServer) -> None:
    token = synapse.register_user("mod", "mod-password-1")
    sign_in(page, synapse, "mod", "mod-password-1")
    state = page.locator("#surge-state")
    expect(state).to_contain_text("Off.")
    expect(state).to_contain_text("Automatic switching is off")

    page.get_by_label("Mode").select_option("approval")
    page.get_by_label("For", exact=True).fill("2h")
    page.get_by_role("button", name="Switch on").click()
    expect(page.locator("#admin-status")).to_contain_text("Surge switched on.")
    expect(state).to_contain_text("ON: approval required, cause manual")
    assert surge_on(synapse, token)

    page.get_by_role("button", name="Switch off").click()
    expect(page.locator("#admin-status")).to_contain_text("Surge switched off.")
    expect(state).to_contain_text("Off. Last switch: manual.")
    assert not surge_on(synapse, token)

    page.get_by_label("For", exact=True).fill("30 days")
    page.get_by_role("button", name="Switch on").click()
    expect(page.locator("#admin-status")).to_contain_text("Not done: duration")
    assert not surge_on(synapse, token)
