"""The request page with the challenge on, in headless Chromium against a real Synapse:
the page solves the proof-of-work in Web Workers and posts the form; a mail arrives."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from synapse_email_gate.rules import proof_of_work
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


@pytest.mark.parametrize(
    ("lang", "intro", "solving", "failed"),
    [
        ("de", "kurzen Spam-Schutz", "wird gelöst", "ließ sich nicht laden"),
        ("fr", "vérification anti-spam que", "en cours", "pas pu être chargée"),
    ],
)
def test_the_challenge_speaks_the_page_language(
    synapse: SynapseServer,
    page: Page,
    lang: str,
    intro: str,
    solving: str,
    failed: str,
) -> None:
    held: list[Any] = []
    page.route("**/api/challenge", lambda route: held.append(route))
    page.goto(f"{synapse.gate_url}?lang={lang}")
    status = page.locator("#challenge-status")
    expect(status).to_contain_text(intro)
    page.locator("input[name=username]").fill(f"speaks{lang}")
    page.locator("input[name=email]").fill(f"speaks{lang}@example.org")
    page.locator("button[type=submit]").click()
    expect(status).to_contain_text(solving)
    held[0].abort()  # the challenge cannot be fetched: the error, in the same language
    expect(status).to_contain_text(failed)


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


def test_both_sha256_engines_of_the_worker_agree_with_python(
    synapse: SynapseServer, page: Page
) -> None:
    """The plain-JS SHA-256 (prefix blocks hashed once) against hashlib, over every
    tail length; then a real solve with each engine, checked by the server's verify."""
    rng = random.Random(9)
    cases = []
    for length in range(0, 160):
        prefix = "".join(rng.choice("abcXYZ019.-_:") for _ in range(length))
        nonce = str(rng.randrange(0, 10 ** rng.randrange(1, 16)))
        cases.append((prefix, nonce))
    page.goto(synapse.gate_url)
    page.add_script_tag(url=synapse.gate_url + "static/email_gate_pow_worker.js")
    got = page.evaluate(
        """(cases) => cases.map(([prefix, nonce]) => {
            const h = new PrefixHasher(new TextEncoder().encode(prefix));
            h.first(writeDecimal(h.tail, 0, 7));  // a previous hash leaves nothing behind
            return h.first(writeDecimal(h.tail, 0, Number(nonce))) >>> 0;
        })""",
        cases,
    )
    expected = [
        int.from_bytes(hashlib.sha256((p + n).encode()).digest()[:4], "big") for p, n in cases
    ]
    assert got == expected

    key = proof_of_work.derive_key("browser test key, long enough")
    for engine in ("webcrypto", "js"):
        issued = proof_of_work.issue(key, 1_000, 60_000, DIFFICULTY)
        result = page.evaluate(
            """([c, d, engine]) => EmailGateChallenge.solve(
                "static/email_gate_pow_worker.js", c, d, null, {engine: engine})""",
            [issued.challenge, DIFFICULTY, engine],
        )
        assert result["engine"] == engine
        assert isinstance(
            proof_of_work.verify(key, issued.challenge, result["nonce"], 2_000),
            proof_of_work.Solved,
        ), result
