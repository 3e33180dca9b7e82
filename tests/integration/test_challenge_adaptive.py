"""The adaptive difficulty against a real Synapse, on SQLite and PostgreSQL: challenges
stockpiled at the base difficulty in a calm spell and spent in a flood, without
fetching new ones, pass one step up and are refused as too easy two steps up, on the
JSON API and on the form."""

from __future__ import annotations

import time
from typing import Any

import pytest

from synapse_email_gate.rules import proof_of_work
from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import form_session

BASE = 4
WINDOW_S = 10  # the shortest window the config allows
# Not a valid localpart: a request with a good solution uses the challenge up and is then
# refused for the name, so the flood records no request and sends no mail.
NOT_A_NAME = "not a name!"


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "challenge": {
            "enabled": True,
            "difficulty": BASE,
            "lifetime": "5m",
            "adaptive": {"max_increase": 3, "threshold": 2, "window": f"{WINDOW_S}s"},
        },
        "rate_limits": {"per_ip": {"burst": 10_000, "per_second": 1000}},
    }


def fetch(synapse: SynapseServer) -> dict[str, Any]:
    answer = http.get(synapse.gate_url + "api/challenge")
    assert answer.status == 200, answer
    body: dict[str, Any] = answer.json()
    return body


def solved(got: dict[str, Any]) -> dict[str, str]:
    return {
        "challenge": got["challenge"],
        "nonce": proof_of_work.solve(got["challenge"], got["difficulty"]),
    }


def spend(synapse: SynapseServer, solution: dict[str, str]) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": NOT_A_NAME, "email": "flood@example.org", **solution},
    )


def test_stockpiled_base_challenges_are_refused_as_too_easy_once_the_level_has_risen(
    synapse: SynapseServer,
) -> None:
    stock = [fetch(synapse) for _ in range(200)]  # the first fetch opens the first window
    assert {got["difficulty"] for got in stock} == {BASE}
    solutions = [solved(got) for got in stock]
    log_start = len(synapse.log_text())

    accepted = 0
    refused: http.Response | None = None
    deadline = time.monotonic() + 6 * WINDOW_S
    while solutions and time.monotonic() < deadline:
        answer = spend(synapse, solutions.pop(0))
        assert answer.status == 400, answer
        if answer.json()["errcode"] != "M_INVALID_USERNAME":
            refused = answer
            break
        accepted += 1
        time.sleep(0.1)  # the flood's pace: every window stays well over the threshold
    assert refused is not None, f"{accepted} stockpiled challenges accepted, none refused"
    assert refused.json()["errcode"] == "EMAIL_GATE_CHALLENGE_TOO_EASY", refused
    message = refused.json()["error"]
    assert "harder now" in message and f"{BASE} bits" in message, message
    assert f"at least {BASE + 1}" in message, message
    log = synapse.log_text()[log_start:]
    assert f"difficulty {BASE} -> {BASE + 1} bits" in log  # passed one step up ...
    assert f"difficulty {BASE + 1} -> {BASE + 2} bits" in log  # ... refused two steps up
    assert "reason=challenge_too_easy" in log

    # The rest of the stockpile is refused too, on the form as well, in plain words.
    assert spend(synapse, solutions.pop(0)).json()["errcode"] == "EMAIL_GATE_CHALLENGE_TOO_EASY"
    csrf, cookies = form_session(synapse)
    page = http.post(
        synapse.gate_url,
        form={"username": "formuser", "email": "f@example.org", "csrf": csrf, **solutions.pop(0)},
        cookies=cookies,
    )
    assert page.status == 400, page
    assert "became harder while you were filling in the form" in page.text
    assert 'value="formuser"' in page.text  # what was typed is kept

    # A challenge fetched now, at the level in force, passes.
    current = fetch(synapse)
    assert current["difficulty"] >= BASE + 2
    assert spend(synapse, solved(current)).json()["errcode"] == "M_INVALID_USERNAME"
