"""Refusals the JSON API answers from memory before it reads the body, against a real
Synapse on SQLite and PostgreSQL (docs/internals.md, "Refused before the body").

An IP ban and a bucket this process knows to be empty need only the client's
address: such a client is refused whatever it sends, even a body that is not
JSON, too large, or without its fields, which the API used to examine first.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask_from

BANNED_NET = "203.0.113.0/24"
BURST = 2

BODIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "not JSON": (b"{not json", {"Content-Type": "application/json"}),
    "not an object": (b"[1, 2]", {"Content-Type": "application/json"}),
    "too large": (b'{"username": "' + b"a" * 20_000 + b'"}', {"Content-Type": "application/json"}),
    "no fields": (b"{}", {"Content-Type": "application/json"}),
    "a form": (b"username=a&email=b", {"Content-Type": "application/x-www-form-urlencoded"}),
}


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "trusted_proxies": ["127.0.0.1"],
        "banned_ips": [BANNED_NET],
        "banned_usernames": ["^forbidden"],
        "rate_limits": {
            "per_ip": {"burst": BURST, "per_second": 0.001},
            "global": {"burst": 100_000, "per_second": 1000},
        },
    }


def post_raw(
    synapse: SynapseServer, ip: str, body: bytes, headers: dict[str, str]
) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request", data=body, headers={**headers, "X-Forwarded-For": ip}
    )


@pytest.mark.parametrize("kind", list(BODIES))
def test_a_banned_address_is_refused_whatever_its_body(synapse: SynapseServer, kind: str) -> None:
    body, headers = BODIES[kind]
    answer = post_raw(synapse, "203.0.113.40", body, headers)
    assert answer.status == 403, answer
    assert answer.json()["errcode"] == "M_FORBIDDEN"
    # The same body from an address that is not banned gets the body's own problem.
    other = post_raw(synapse, "192.0.2.40", body, headers)
    assert other.status in (400, 413), other
    assert other.json()["errcode"] != "M_FORBIDDEN"


def test_an_emptied_bucket_is_answered_429_whatever_the_body(synapse: SynapseServer) -> None:
    ip = "198.51.100.61"
    for i in range(BURST):
        assert ask_from(synapse, f"early{i}", f"early{i}@example.org", ip).status == 202
    # The first refusal comes from the database and is remembered by the process...
    limited = ask_from(synapse, "early9", "early9@example.org", ip)
    assert limited.status == 429, limited
    # ...which then refuses this client before reading what it sends.
    for kind, (body, headers) in BODIES.items():
        answer = post_raw(synapse, ip, body, headers)
        assert answer.status == 429, (kind, answer)
        assert answer.json()["errcode"] == "M_LIMIT_EXCEEDED"
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
