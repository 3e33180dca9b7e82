"""Nothing in an answer tells a caller what happened to an address, and the pages are
safe to show: against a real Synapse on SQLite and PostgreSQL.

Five email-side outcomes — fresh (mailed), cooldown, already used, individually
banned, per-address rate limit — must give the same status, body and headers,
and the same response time within noise (the mail work happens after the answer).
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import (
    ask,
    form_session,
    header_set,
    post_form,
    recorded_requests,
    register,
    registered,
    request_outcome,
    request_token,
)

COOLDOWN_S = 3.0
BANNED = "hidden@example.org"
CATEGORIES = ["fresh", "cooldown", "used", "banned", "per_email"]
EXPECTED = {
    "fresh": ("issued", None),
    "cooldown": ("suppressed", "cooldown"),
    "used": ("suppressed", "already_used"),
    "banned": ("suppressed", "email_banned"),
    "per_email": ("suppressed", "rate_limited_email"),
}


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "email_cooldown": f"{int(COOLDOWN_S)}s",
        "multiple_users_per_email": False,
        "banned_emails": [BANNED],
        "rate_limits": {
            "per_ip": {"burst": 100_000, "per_second": 1000},
            "per_email": {"burst": 1, "per_second": 0.00001},
            "global": {"burst": 100_000, "per_second": 1000},
        },
    }


class Addresses:
    """An address for each outcome; `address(category)` gives one to ask for now."""

    def __init__(self, synapse: SynapseServer, smtp: SmtpCatcher) -> None:
        self.synapse = synapse
        self.per_email = "limited@example.org"
        self.used = "used@example.org"
        self._fresh = itertools.count()
        self.last_fresh = ("", "")  # (localpart, address)
        self.cooling = ""
        smtp.clear()
        self._mailed = time.monotonic()
        request_token(synapse, smtp, "limited", self.per_email)
        token = request_token(synapse, smtp, "usedacct", self.used)
        assert registered(register(synapse, "usedacct", token))

    def cool_last_fresh(self) -> None:
        """The last fresh address, once its token is issued, is the cooldown one."""
        name, address = self.last_fresh
        assert request_outcome(self.synapse, name) == ("issued", None)
        self.cooling = address

    def address(self, category: str, name: str) -> str:
        if category == "fresh":
            self.last_fresh = (name, f"fresh{next(self._fresh)}@example.org")
            return self.last_fresh[1]
        if category == "cooldown":
            assert self.cooling, "cool_last_fresh() first"
            return self.cooling
        if category == "used":
            return self.used
        if category == "banned":
            return BANNED
        # Out of cooldown, so that only the per-address bucket holds it back.
        time.sleep(max(0.0, self._mailed + COOLDOWN_S + 0.3 - time.monotonic()))
        return self.per_email


@pytest.fixture(scope="module", autouse=True)
def addresses(synapse: SynapseServer, smtp: SmtpCatcher) -> Addresses:
    return Addresses(synapse, smtp)


_names = itertools.count()


def new_name(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


# --- the pages -----------------------------------------------------------------


def assert_page_headers(answer: http.Response) -> None:
    assert answer.header("Content-Type") == "text/html; charset=utf-8", answer
    csp = answer.header("Content-Security-Policy") or ""
    assert "frame-ancestors 'none'" in csp, csp
    assert "default-src 'none'" in csp, csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    assert answer.header("X-Frame-Options") == "DENY"
    assert answer.header("Referrer-Policy") == "no-referrer"
    assert answer.header("X-Content-Type-Options") == "nosniff"


def test_every_page_sends_the_security_headers(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    session = form_session(synapse)
    pages: dict[str, Callable[[], http.Response]] = {
        "form": lambda: http.get(synapse.gate_url),
        "sent": lambda: post_form(synapse, "headers1", "headers1@example.org", session),
        "form error": lambda: post_form(synapse, "bad name!", "x@example.org", session),
        "csrf error": lambda: http.post(
            synapse.gate_url, form={"username": "a", "email": "a@example.org"}
        ),
        "refused": lambda: http.post(
            synapse.gate_url, form={"x": "y"}, headers={"Content-Type": "text/plain"}
        ),
        "landing": lambda: http.get(synapse.gate_url + "register?token=nope"),
    }
    for name, fetch in pages.items():
        answer = fetch()
        assert answer.status < 500, (name, answer)
        assert_page_headers(answer)
    api = ask(synapse, "headers2", "headers2@example.org")
    assert api.header("X-Content-Type-Options") == "nosniff"
    assert api.header("Content-Type") == "application/json"
    mailbox.wait_for_rcpt("headers1@example.org")
    mailbox.wait_for_rcpt("headers2@example.org")


@pytest.mark.parametrize(
    ("username", "email", "raw"),
    [
        ("<script>alert(1)</script>", "x@example.org", "<script>alert(1)"),
        ('" autofocus onfocus="alert(1)', "x@example.org", 'onfocus="alert(1)"'),
        ("escaper", '"><img src=x onerror=alert(1)>@example.org', "<img src=x"),
        ("escaper", "x@example.org' onmouseover='alert(1)", "' onmouseover='"),
        ("</textarea><svg/onload=alert(1)>", "<b>@example.org", "<svg/onload"),
    ],
)
def test_user_input_is_escaped_when_the_form_comes_back(
    synapse: SynapseServer, mailbox: SmtpCatcher, username: str, email: str, raw: str
) -> None:
    answer = post_form(synapse, username, email)
    assert answer.status == 400, answer
    assert 'name="username"' in answer.text  # the form, with the values and the error
    assert raw not in answer.text
    assert "&lt;" in answer.text or "&#34;" in answer.text or "&#39;" in answer.text
    assert_page_headers(answer)
    assert recorded_requests(synapse, "escaper") == []


# --- the answers ---------------------------------------------------------------


def check_outcomes(synapse: SynapseServer, asked: dict[str, str]) -> None:
    """Each request (localpart -> category) came to the outcome its category names."""
    for name, category in asked.items():
        assert request_outcome(synapse, name) == EXPECTED[category], (name, category)


def test_every_email_side_outcome_gives_the_same_json_answer(
    synapse: SynapseServer, addresses: Addresses, mailbox: SmtpCatcher
) -> None:
    answers: dict[str, http.Response] = {}
    asked: dict[str, str] = {}
    for category in CATEGORIES:
        name = new_name("same")
        answers[category] = ask(synapse, name, addresses.address(category, name))
        asked[name] = category
        if category == "fresh":
            addresses.cool_last_fresh()
    check_outcomes(synapse, asked)

    fresh = answers["fresh"]
    assert fresh.status == 202
    assert fresh.json() == {"status": "accepted"}
    for category, answer in answers.items():
        assert answer.status == fresh.status, category
        assert answer.body == fresh.body, category
        assert header_set(answer) == header_set(fresh), category
    mailbox.wait_for_rcpt(addresses.last_fresh[1])


def test_every_email_side_outcome_gives_the_same_page(
    synapse: SynapseServer, addresses: Addresses, mailbox: SmtpCatcher
) -> None:
    session = form_session(synapse)
    answers: dict[str, http.Response] = {}
    asked: dict[str, str] = {}
    for category in CATEGORIES:
        name = new_name("page")
        answers[category] = post_form(synapse, name, addresses.address(category, name), session)
        asked[name] = category
        if category == "fresh":
            addresses.cool_last_fresh()
    check_outcomes(synapse, asked)

    fresh = answers["fresh"]
    assert fresh.status == 202
    for category, answer in answers.items():
        assert answer.status == fresh.status, category
        assert answer.body == fresh.body, category
        assert header_set(answer) == header_set(fresh), category
    mailbox.wait_for_rcpt(addresses.last_fresh[1])


def time_answers(
    synapse: SynapseServer, addresses: Addresses, rounds: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Response times per category; the categories take turns in a shuffled order."""
    times: dict[str, list[float]] = {category: [] for category in CATEGORIES}
    asked: dict[str, str] = {}
    rng = random.Random(4)
    for _ in range(rounds):
        addresses.cool_last_fresh()  # the fresh address of the round before
        for category in rng.sample(CATEGORIES, k=len(CATEGORIES)):
            name = new_name("timed")
            address = addresses.address(category, name)
            start = time.perf_counter()
            answer = ask(synapse, name, address)
            times[category].append(time.perf_counter() - start)
            assert answer.status == 202, (category, answer)
            asked[name] = category
    return times, asked


def timing_verdict(times: dict[str, list[float]]) -> list[str]:
    """The categories whose median differs from the fresh one by more than noise."""
    medians = {category: statistics.median(values) for category, values in times.items()}
    base = medians["fresh"]
    problems = []
    for category, median in medians.items():
        low, high = sorted((median, base))
        if high - low >= 0.015 and high >= 3 * low:
            problems.append(f"{category}: {median * 1000:.1f} ms vs fresh {base * 1000:.1f} ms")
    return problems


def test_every_email_side_outcome_takes_the_same_time(
    synapse: SynapseServer, addresses: Addresses, mailbox: SmtpCatcher
) -> None:
    name = new_name("timed")
    ask(synapse, name, addresses.address("fresh", name))
    time_answers(synapse, addresses, rounds=2)  # warm up
    problems: list[str] = []
    for _ in range(2):  # noise can fool one measurement, not a second one too
        times, asked = time_answers(synapse, addresses, rounds=15)
        check_outcomes(synapse, asked)
        problems = timing_verdict(times)
        if not problems:
            break
    assert not problems, problems
    mailbox.wait_for_rcpt(addresses.last_fresh[1])


# --- reservations --------------------------------------------------------------


def reservation_hold(synapse: SynapseServer, localpart: str) -> int:
    """How long the reservation of ``localpart`` lasts from its request, in ms."""
    rows = synapse.query(
        "SELECT v.expires_ts - r.created_ts FROM email_gate_reservations v"
        " JOIN email_gate_requests r ON r.id = v.request_id WHERE v.localpart = ?",
        (localpart,),
    )
    assert len(rows) == 1, (localpart, rows)
    return int(rows[0][0])


def test_a_held_username_answers_the_same_whatever_became_of_the_holders_address(
    synapse: SynapseServer, addresses: Addresses, mailbox: SmtpCatcher
) -> None:
    """The measured probe: ask for a fresh name with X, then for the same name with a
    stranger's address (and with X again). Mailed, cooldown, banned, already used or
    per-address-limited, X's fate must not show in the second answer."""
    probes: dict[str, list[http.Response]] = {}
    asked: dict[str, str] = {}
    for n, category in enumerate(CATEGORIES):
        name = new_name("held")
        holder = addresses.address(category, name)
        first = ask(synapse, name, holder)
        assert first.status == 202, (category, first)
        asked[name] = category
        # Probed once X's fate is assessed: mailed, or suppressed for its reason.
        assert request_outcome(synapse, name) == EXPECTED[category], category
        if category == "fresh":
            addresses.cool_last_fresh()
        probes[category] = [
            ask(synapse, name, f"stranger{n}@example.org"),
            ask(synapse, name, holder),
            ask(synapse, name, holder.upper()),
        ]

    reference = probes["fresh"][0]
    assert reference.status == 400, reference
    assert reference.json()["errcode"] == "M_USER_IN_USE"
    for category, answers in probes.items():
        for answer in answers:
            assert answer.status == reference.status, (category, answer)
            assert answer.body == reference.body, (category, answer)
            assert header_set(answer) == header_set(reference), category
    # Every one of them holds its name equally long: the token lifetime, from the request.
    assert {reservation_hold(synapse, name) for name in asked} == {24 * 3600 * 1000}
    # Only the holders' first requests were recorded.
    for name in asked:
        assert len(recorded_requests(synapse, name)) == 1, name
    mailbox.wait_for_rcpt(addresses.last_fresh[1])


def test_a_normalised_variant_of_the_holders_address_answers_like_a_stranger(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    name = new_name("victimname")
    assert ask(synapse, name, "victim@gmail.com").status == 202
    mailbox.wait_for_rcpt("victim@gmail.com")
    variant = ask(synapse, name, "V.i.c.t.i.m+probe@googlemail.com")
    stranger = ask(synapse, name, "someone.else@gmail.com")
    holder = ask(synapse, name, "victim@gmail.com")
    for answer in (variant, holder):
        assert (answer.status, answer.body) == (stranger.status, stranger.body), answer
        assert header_set(answer) == header_set(stranger)
    assert stranger.status == 400 and stranger.json()["errcode"] == "M_USER_IN_USE"
    # The form says the same too, for each of them.
    session = form_session(synapse)
    pages = []
    for address in ("V.i.c.t.i.m+probe@googlemail.com", "someone.else@gmail.com"):
        page = post_form(synapse, name, address, session)
        assert page.status == 400, page
        pages.append(page.text.replace(address, "ADDRESS"))  # the form shows it again
    assert pages[0] == pages[1]


def test_asking_for_a_held_username_costs_a_per_ip_token_and_then_gets_429(
    synapse_db: str, make_synapse: Callable[..., SynapseServer], smtp: SmtpCatcher
) -> None:
    """Probing is rate limited like asking: the per-IP token is taken before the
    reservation is looked at, so past the limit the answer is 429, not "reserved"."""
    tight = make_synapse(
        {"rate_limits": {"per_ip": {"burst": 3, "per_second": 0.001}}}, db=synapse_db
    )
    assert ask(tight, "probed", "owner@example.org").status == 202
    smtp.wait_for_rcpt("owner@example.org")
    for n in range(2):
        answer = ask(tight, "probed", f"prober{n}@example.org")
        assert answer.status == 400, answer
        assert answer.json()["errcode"] == "M_USER_IN_USE"
    over = ask(tight, "probed", "prober9@example.org")
    assert over.status == 429, over
    assert over.header("Retry-After")
    assert over.json()["errcode"] == "M_LIMIT_EXCEEDED"
    # Past the limit a free name gets the same 429: nothing about names is said.
    free = ask(tight, "notprobed", "prober9@example.org")
    assert (free.status, free.body) == (over.status, over.body)
