"""The API description against a real Synapse, on SQLite and PostgreSQL.

`GET admin/openapi.json` serves the description without auth, byte for byte what
docs/openapi.json holds. schemathesis, fed that description, fuzzes every
operation: whatever it sends, no answer is a 5xx and every answer conforms to the
description (status, content type, headers, body), for the public API and, with a
server admin's access token, the admin API. Seeded and derandomized with few
examples, so it is quick and sends the same requests each run. The inputs it found
that answered 500 or against the description are pinned below.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from synapse_email_gate.web import openapi
from synapse_email_gate.web.resource import BASE_PATH
from tests.harness import http
from tests.harness.synapse import SynapseServer

DESCRIPTION_PATH = BASE_PATH + "/admin/openapi.json"
EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# What a refusal of input the description does not allow may answer.
REFUSALS = [400, 401, 403, 404, 409, 413]


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    # Limits high enough that the fuzzer reaches past them (429 is described too).
    high = {"burst": 100_000, "per_second": 1000}
    return {"rate_limits": {"per_ip": high, "global": high, "per_email": high}}


def test_description_is_served_without_auth(synapse: SynapseServer) -> None:
    resp = http.get(synapse.url(DESCRIPTION_PATH))
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/json"
    assert resp.header("Access-Control-Allow-Origin") == "*"
    assert resp.body == openapi.render()
    assert resp.json()["openapi"] == "3.1.0"


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20,
        "generation": {
            "max-examples": EXAMPLES,
            "deterministic": True,
            "database": "none",
            # Unknown query parameters and body fields are ignored, as documented:
            # sending them is not invalid input.
            "allow-extra-parameters": False,
            # The Authorization header is the test's (the admin's), not generated.
            "with-security-parameters": False,
        },
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        "phases": {"stateful": {"enabled": False}},
    }
)
SCHEMA = schemathesis.openapi.from_dict(openapi.description(), config=CONFIG)


@SCHEMA.parametrize()
def test_api_answers_as_described(
    case: schemathesis.Case, synapse: SynapseServer, admin_token: str
) -> None:
    headers = {}
    if case.operation.definition.raw.get("security"):
        headers["Authorization"] = f"Bearer {admin_token}"
    case.call_and_validate(base_url=synapse.base_url, headers=headers, checks=CHECKS)


def admin(synapse: SynapseServer, token: str, method: str, path: str, **kw: Any) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(token), **kw
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("GET", "requests?from=" + "9" * 30, None, "from must be an integer"),
        ("GET", "audit?limit=" + "9" * 30, None, "limit must be an integer"),
        ("POST", "tokens", {"uses_allowed": 2**40}, "uses_allowed must be an integer from 0"),
        ("POST", "tokens", {"expiry": "9" * 20 + "d"}, "too far in the future"),
        ("POST", "tokens", {"expiry": {}, "expiry_time": 10**13}, "not both"),
        ("POST", "tokens", {"token": "A" * 16, "length": 65}, "length must be"),
        ("POST", "tokens/delete", {"tokens": "abc"}, "tokens must be a non-empty list"),
        ("POST", "bans", {"kind": {}, "match": "x"}, "kind must be one of"),
        ("POST", "bans", {"kind": "username", "match": "x", "expires": "9" * 20 + "d"}, "far"),
    ],
)
def test_bad_admin_input_is_refused_not_an_error(
    synapse: SynapseServer,
    admin_token: str,
    method: str,
    path: str,
    body: Any,
    says: str,
) -> None:
    resp = admin(synapse, admin_token, method, path, json=body)
    assert resp.status == 400, resp.text
    assert resp.json()["errcode"] == "M_INVALID_PARAM"
    assert says in resp.json()["error"]


def test_text_with_nul_is_refused_in_bodies_and_unknown_in_urls(
    synapse: SynapseServer, admin_token: str
) -> None:
    # PostgreSQL refuses NUL in text: these answered 500 there.
    for path, body in (
        ("api/request", {"username": "a\x00b", "email": "a@example.org"}),
        ("admin/bans", {"kind": "username", "match": "a\x00b"}),
    ):
        resp = http.post(
            synapse.gate_url + path, json=body, headers=synapse.auth_headers(admin_token)
        )
        assert resp.status == 400, (path, resp.text)
        assert resp.json()["errcode"] == "M_BAD_JSON"
        assert "NUL" in resp.json()["error"]
    assert http.get(synapse.gate_url + "register?token=a%00b").status == 404
    assert admin(synapse, admin_token, "GET", "tokens/a%00b").status == 404
    assert admin(synapse, admin_token, "GET", "requests/a%00b").status == 404
    listed = admin(synapse, admin_token, "GET", "requests?q=%00")
    assert listed.status == 200 and listed.json()["requests"] == []
    form = http.post(synapse.gate_url + "register", form={"token": "a\x00b", "csrf": "x"})
    assert form.status < 500
