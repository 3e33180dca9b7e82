"""The proof-of-work challenge against a real Synapse, on SQLite and PostgreSQL:
scripts without a solution get 400 and no mail; a solved challenge (solved here in
Python, as docs/challenge.md tells script authors) gets 202 and a mail, once."""

from __future__ import annotations

import re
from typing import Any

import pytest

from synapse_email_gate.rules import proof_of_work
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import form_session, quiet

DIFFICULTY = 10


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "challenge": {"enabled": True, "difficulty": DIFFICULTY, "lifetime": "2m"},
        # Many requests from 127.0.0.1 in this module: limits are tested elsewhere.
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def fetch(synapse: SynapseServer) -> dict[str, Any]:
    answer = http.get(synapse.gate_url + "api/challenge")
    assert answer.status == 200, answer
    body: dict[str, Any] = answer.json()
    return body


def solution(synapse: SynapseServer) -> dict[str, str]:
    """A fresh challenge and its nonce, found the way docs/challenge.md describes."""
    got = fetch(synapse)
    return {
        "challenge": got["challenge"],
        "nonce": proof_of_work.solve(got["challenge"], got["difficulty"]),
    }


def ask(synapse: SynapseServer, username: str, email: str, **extra: Any) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request", json={"username": username, "email": email, **extra}
    )


def used_challenges(synapse: SynapseServer) -> int:
    return int(synapse.query("SELECT COUNT(*) FROM email_gate_used_challenges")[0][0])


def requests_for(synapse: SynapseServer, localpart: str) -> int:
    rows = synapse.query(
        "SELECT COUNT(*) FROM email_gate_requests WHERE localpart = ?", (localpart,)
    )
    return int(rows[0][0])


def test_the_challenge_endpoint_hands_out_signed_challenges(synapse: SynapseServer) -> None:
    answer = http.get(synapse.gate_url + "api/challenge")
    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json"
    assert answer.header("Cache-Control") == "no-store"
    body = answer.json()
    assert body["difficulty"] == DIFFICULTY
    assert body["algorithm"] == "sha256-leading-zero-bits"
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]{22}\.\d+\.10\.[A-Za-z0-9_-]{43}", body["challenge"])
    assert body["challenge"].split(".")[2] == str(body["expires_ms"])
    assert 0 < body["expires_in_ms"] <= 120_000
    assert fetch(synapse)["challenge"] != body["challenge"]


def test_a_script_without_a_solution_gets_400_and_no_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    answer = ask(synapse, "scripted", "scripted@example.org")
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_CHALLENGE_REQUIRED"
    assert quiet(mailbox) == []
    assert requests_for(synapse, "scripted") == 0


@pytest.mark.parametrize(
    ("fields", "errcode"),
    [
        ({"challenge": "v1.nonsense", "nonce": "1"}, "EMAIL_GATE_CHALLENGE_INVALID"),
        ({"challenge": 12, "nonce": "1"}, "EMAIL_GATE_CHALLENGE_INVALID"),
        ({"nonce": "1"}, "EMAIL_GATE_CHALLENGE_REQUIRED"),
    ],
    ids=["garbage", "not-a-string", "no-challenge"],
)
def test_bad_solutions_are_refused_before_anything_else(
    synapse: SynapseServer, mailbox: SmtpCatcher, fields: dict[str, Any], errcode: str
) -> None:
    # The username is banned-looking and the address invalid: the challenge is checked first.
    answer = ask(synapse, "bad solution", "not-an-address", **fields)
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == errcode
    assert quiet(mailbox, 0.3) == []


def test_a_wrong_nonce_or_a_forged_difficulty_is_invalid(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    got = fetch(synapse)
    c = got["challenge"]
    nonce = 0
    while proof_of_work.meets_difficulty(proof_of_work.hash_solution(c, str(nonce)), DIFFICULTY):
        nonce += 1
    wrong = ask(synapse, "wrongnonce", "wrongnonce@example.org", challenge=c, nonce=str(nonce))
    assert wrong.status == 400
    assert wrong.json()["errcode"] == "EMAIL_GATE_CHALLENGE_INVALID"
    parts = c.split(".")
    parts[3] = "1"
    easy = ".".join(parts)
    forged = ask(
        synapse,
        "forged",
        "forged@example.org",
        challenge=easy,
        nonce=proof_of_work.solve(easy, 1),
    )
    assert forged.status == 400
    assert forged.json()["errcode"] == "EMAIL_GATE_CHALLENGE_INVALID"
    assert quiet(mailbox, 0.3) == []
    assert requests_for(synapse, "wrongnonce") == requests_for(synapse, "forged") == 0


def test_a_solved_challenge_gets_202_and_a_mail_and_cannot_be_replayed(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    solved = solution(synapse)
    used_before = used_challenges(synapse)
    answer = ask(synapse, "solver", "solver@example.org", **solved)
    assert answer.status == 202, answer
    assert answer.json() == {"status": "accepted"}
    mail = mailbox.wait_for(lambda m: m.to == "solver@example.org")
    assert "@solver:test.local" in mail.text
    assert used_challenges(synapse) == used_before + 1

    replay = ask(synapse, "replayer", "replayer@example.org", **solved)
    assert replay.status == 400, replay
    assert replay.json()["errcode"] == "EMAIL_GATE_CHALLENGE_REPLAYED"
    assert quiet(mailbox) == []
    assert requests_for(synapse, "replayer") == 0


def test_the_page_explains_the_challenge_and_loads_the_solver(synapse: SynapseServer) -> None:
    page = http.get(synapse.gate_url)
    assert page.status == 200
    noscript = re.search(r"<noscript>(.*?)</noscript>", page.text, re.S)
    assert noscript and "needs JavaScript" in noscript.group(1)
    assert 'name="challenge"' in page.text and 'name="nonce"' in page.text
    assert 'data-challenge="/_synapse/client/email_gate/api/challenge"' in page.text
    assert "/static/email_gate_challenge.js" in page.text
    assert re.search(r'<progress id="challenge-progress"', page.text)
    for script in ("email_gate_challenge.js", "email_gate_pow_worker.js"):
        js = http.get(synapse.gate_url + "static/" + script)
        assert js.status == 200, script
        assert js.header("Content-Type") == "text/javascript; charset=utf-8"


def test_the_form_without_a_solution_shows_the_form_again_and_sends_nothing(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    csrf, cookies = form_session(synapse)
    answer = http.post(
        synapse.gate_url,
        form={"username": "formbot", "email": "formbot@example.org", "csrf": csrf},
        cookies=cookies,
    )
    assert answer.status == 400
    assert "JavaScript" in answer.text
    assert 'value="formbot"' in answer.text  # what was typed is kept
    assert 'id="form-error"' in answer.text
    assert quiet(mailbox) == []


def test_the_form_with_a_solution_sends_the_mail(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    csrf, cookies = form_session(synapse)
    answer = http.post(
        synapse.gate_url,
        form={
            "username": "formuser",
            "email": "formuser@example.org",
            "csrf": csrf,
            **solution(synapse),
        },
        cookies=cookies,
    )
    assert answer.status == 202, answer
    assert "Check your inbox" in answer.text
    mailbox.wait_for(lambda m: m.to == "formuser@example.org")


def test_challenges_survive_a_restart_because_the_secret_is_stored(
    synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    """Every process (workers, or the same one after a restart) shares one key."""
    before = solution(synapse)
    assert len(synapse.query("SELECT name FROM email_gate_secrets")) == 1
    synapse.restart()
    answer = ask(synapse, "restarted", "restarted@example.org", **before)
    assert answer.status == 202, answer
    mailbox.wait_for(lambda m: m.to == "restarted@example.org")


# --- challenge off ------------------------------------------------------------


def test_with_the_challenge_off_nothing_is_asked(make_synapse: Any, mailbox: SmtpCatcher) -> None:
    server: SynapseServer = make_synapse({"challenge": {"enabled": False}})
    off = http.get(server.gate_url + "api/challenge")
    assert off.status == 404
    page = http.get(server.gate_url)
    assert "<noscript>" not in page.text and 'name="nonce"' not in page.text
    assert "email_gate_challenge.js" not in page.text
    answer = ask(server, "plain", "plain@example.org")
    assert answer.status == 202, answer
    mailbox.wait_for(lambda m: m.to == "plain@example.org")
