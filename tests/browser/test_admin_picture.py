"""The picture of the gate on the moderation page, in headless Chromium: after real
requests, refusals and a registration, the chart and the table show their totals,
drawn by the module's own script under the page's CSP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PageLog
from tests.browser.test_pages import axe
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from, register, registered, token_from

SYNAPSE_DATABASES = ["sqlite"]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "banned_usernames": ["^spammer"],
        "moderators": ["@mod:test.local"],
        "rate_limits": {
            "per_ip": {"burst": 3, "per_second": 0.0001},
            "global": {"burst": 1000, "per_second": 100},
        },
    }


def sign_in(page: Page, synapse: SynapseServer) -> None:
    page.goto(synapse.gate_url + "admin")
    page.get_by_label("Username").fill("mod")
    page.get_by_label("Password").fill("mod-password-1")
    page.get_by_role("button", name="Sign in").click()


def chart_sum(page: Page, range_name: str, series: str) -> int:
    counts = page.locator(f"#picture-{range_name} svg rect[data-series='{series}']")
    return sum(int(c) for c in counts.evaluate_all("els => els.map(e => e.dataset.count)"))


def test_the_chart_and_table_show_what_happened(
    page: Page,
    page_log: PageLog,
    new_page: Callable[..., Page],
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    screenshot: Callable[[Page, str], Path],
) -> None:
    synapse.register_user("mod", "mod-password-1")
    for name in ("hiker1", "hiker2", "hiker3"):
        assert ask_from(synapse, name, f"{name}@example.org", "10.2.0.1").status == 202
    first = mailbox.wait_for(lambda m: m.to == "hiker1@example.org")
    for name in ("hiker2", "hiker3"):
        mailbox.wait_for(lambda m, n=name: m.to == f"{n}@example.org")  # type: ignore[misc]
    assert registered(register(synapse, "hiker1", token_from(first)))
    for name in ("spammer1", "spammer2"):
        assert ask_from(synapse, name, f"{name}@example.org", "10.2.0.2").status == 400
    for n in range(4, 8):
        assert ask_from(synapse, f"hiker{n}", f"hiker{n}@example.org", "10.2.0.1").status == 429

    sign_in(page, synapse)

    totals = page.locator("#picture-totals")
    expect(totals).to_be_visible()
    expected = {
        "requests": "3",
        "tokens": "3",
        "accounts": "1",
        "refused": "6",
        "refused:EMAIL_GATE_USERNAME_BANNED": "2",
        "refused:M_LIMIT_EXCEEDED": "4",
    }
    for series, count in expected.items():
        row = totals.locator(f"tr[data-series='{series}']")
        expect(row.locator("td")).to_have_text([count, count])
    expect(page.get_by_role("row", name="Refused: M_LIMIT_EXCEEDED 4 4")).to_be_visible()
    for range_name, buckets in (("day", 24), ("week", 28)):
        chart = page.locator(f"#picture-{range_name} svg")
        expect(chart).to_have_attribute("role", "img")
        expect(chart.locator("rect[data-series='requests']")).to_have_count(buckets)
        for series in ("requests", "tokens", "accounts", "refused"):
            assert chart_sum(page, range_name, series) == int(expected[series]), (
                range_name,
                series,
            )
    label = page.locator("#picture-day svg").get_attribute("aria-label") or ""
    assert "3 requests, 3 issued tokens, 1 accounts made, 6 refusals" in label
    screenshot(page, "admin-picture")
    axe(page, "admin-picture")

    # Refreshing draws the new counts.
    assert ask_from(synapse, "spammer3", "spammer3@example.org", "10.2.0.2").status == 400
    page.get_by_role("button", name="Refresh the picture").click()
    expect(totals.locator("tr[data-series='refused'] td")).to_have_text(["7", "7"])
    assert page_log.errors() == []

    # In the dark the labels follow the text colour; axe finds nothing serious either.
    dark = new_page(color_scheme="dark")
    sign_in(dark, synapse)
    expect(dark.locator("#picture-day svg")).to_be_visible()
    fills = dark.locator("#picture-day svg text").evaluate_all(
        "els => els.map(e => getComputedStyle(e).fill)"
    )
    text_colour = dark.locator("#picture-heading").evaluate("e => getComputedStyle(e).color")
    assert fills and set(fills) == {text_colour}
    axe(dark, "admin-picture-dark")
    screenshot(dark, "admin-picture-dark")
