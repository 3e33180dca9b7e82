"""Malformed JSON bodies against a real Synapse, on SQLite and PostgreSQL: the JSON
API and the admin API answer each with a 400 and an errcode, and log no ERROR."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import http
from tests.harness.synapse import SynapseServer

MALFORMED = [
    pytest.param(b"[" * 15_000, "M_BAD_JSON", id="15000-brackets"),
    pytest.param(b'{"a":' * 3_000, "M_BAD_JSON", id="3000-objects"),  # under 16 KiB
    pytest.param(b'{"username": ' + b"[" * 500 + b"]" * 500 + b"}", "M_BAD_JSON", id="500-deep"),
    pytest.param(b'{"username": "al\xffice", "email": "a@example.org"}', "M_NOT_JSON", id="utf8"),
    pytest.param(b'["alice", "alice@example.org"]', "M_BAD_JSON", id="not-an-object"),
    pytest.param(b'{"username": "alice", "n": 1' + b"0" * 5000 + b"}", "M_BAD_JSON", id="huge-int"),
    pytest.param(b'{"username": "alice", "n": 1e999}', "M_BAD_JSON", id="huge-float"),
    pytest.param(b'{"username": "alice", "n": NaN}', "M_NOT_JSON", id="nan"),
    pytest.param(
        b'{"username": "alice", "username": "bob", "email": "a@example.org"}',
        "M_BAD_JSON",
        id="duplicate-key",
    ),
    pytest.param(
        b'{"username": "\\udc00", "email": "a@example.org"}', "M_BAD_JSON", id="surrogate"
    ),
]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {"rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}}}


def errors_logged_since(synapse: SynapseServer, offset: int) -> list[str]:
    return [line for line in synapse.log_text()[offset:].splitlines() if " - ERROR - " in line]


def post_raw(url: str, body: bytes, headers: dict[str, str] | None = None) -> http.Response:
    return http.post(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


@pytest.mark.parametrize(("body", "errcode"), MALFORMED)
def test_the_json_api_answers_a_malformed_body_with_400(
    synapse: SynapseServer, body: bytes, errcode: str
) -> None:
    offset = len(synapse.log_text())
    answer = post_raw(synapse.gate_url + "api/request", body)
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == errcode, answer.json()
    assert answer.json()["error"]
    assert errors_logged_since(synapse, offset) == []
    assert synapse.query("SELECT COUNT(*) FROM email_gate_requests")[0][0] == 0


@pytest.mark.parametrize("path", ["admin/bans", "admin/tokens", "admin/tokens/delete"])
@pytest.mark.parametrize(("body", "errcode"), MALFORMED)
def test_the_admin_api_answers_a_malformed_body_with_400(
    synapse: SynapseServer, admin_token: str, path: str, body: bytes, errcode: str
) -> None:
    offset = len(synapse.log_text())
    answer = post_raw(synapse.gate_url + path, body, synapse.auth_headers(admin_token))
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == errcode, answer.json()
    assert errors_logged_since(synapse, offset) == []


def test_a_good_body_still_works_on_both(synapse: SynapseServer, admin_token: str) -> None:
    ban = post_raw(
        synapse.gate_url + "admin/bans",
        b'{"kind": "username", "match": "^malformed$", "reason": "test"}',
        synapse.auth_headers(admin_token),
    )
    assert ban.status == 201, ban
    answer = post_raw(
        synapse.gate_url + "api/request", b'{"username": "malformed", "email": "m@example.org"}'
    )
    assert answer.status == 400, answer
    assert answer.json()["errcode"] == "EMAIL_GATE_USERNAME_BANNED"
