"""Property-based fuzzing of the request endpoints against a real Synapse on SQLite and
PostgreSQL: whatever is sent, the answer is never a 5xx, and nothing user-supplied
comes back unescaped in a page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import form_session, post_form


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# Never in a template: if it comes back, user input was reflected unescaped.
MARK = "<zq\"zq'zq>"
RAW_MARKS = ("<zq", '"zq', "'zq")


@pytest.fixture(scope="module")
def gate_config() -> dict[str, Any]:
    return {
        "banned_usernames": ["(?i)admin", "(a+)+$"],
        "banned_emails": ["*@example.net"],
        "rate_limits": {
            "per_ip": {"burst": 100_000, "per_second": 1000},
            "global": {"burst": 100_000, "per_second": 1000},
        },
    }


TRICKY = st.sampled_from(
    [
        "",
        " ",
        "@",
        "@:",
        "@alice:test.local",
        "@alice:other.example",
        "x@example.org",
        "x@example.net",
        "x@mailinator.com",
        "X@[127.0.0.1]",
        "a@b",
        "a" * 321,
        "a" * 320,
        "a" * 250 + "@example.org",
        "<script>alert(1)</script>",
        "x@example.org\r\nBcc: y@example.org",
        "\x00",
        "\ud800",
        "\ud800@example.org",
        "user\udfff",
        "x@bücher.de",
        "ü@example.org",
        "x@xn--.org",
        "x@-example.org",
        "x@" + "a" * 64 + ".org",
        "x@" + "a." * 130 + "org",
        "{{ 7*7 }}",
        "%s%s%n",
        "'; DROP TABLE email_gate_requests; --",
    ]
)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
USERNAMES = st.from_regex(r"[a-z0-9._=/-]{1,24}", fullmatch=True)
FIELD = st.one_of(
    TRICKY,
    st.text(),
    USERNAMES,
    st.emails(),
    JSON_VALUES,
    st.builds(lambda a, b: a + b, TRICKY, st.text(max_size=8)),
)
BODIES = st.one_of(
    st.fixed_dictionaries(
        {"username": USERNAMES, "email": st.one_of(st.emails(), TRICKY, st.text())}
    ),
    st.fixed_dictionaries({}, optional={"username": FIELD, "email": FIELD, "lang": FIELD}),
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4),
    JSON_VALUES,
)


def assert_sound_json(answer: http.Response) -> None:
    event(f"status {answer.status}")
    assert answer.status < 500, answer
    assert answer.header("Content-Type") == "application/json", answer
    body = answer.json()
    if answer.status == 202:
        assert body == {"status": "accepted"}
    else:
        assert answer.status in (400, 403, 413, 429), answer
        assert isinstance(body.get("errcode"), str) and isinstance(body.get("error"), str)


@fuzz_settings(150)
@given(body=BODIES)
# Found by this test: a lone surrogate reached the username ban patterns (500).
@example(body={"username": "\ud800", "email": " "})
@example(body={"username": "user\udfff", "email": "x@example.org"})
def test_the_api_never_fails_on_any_json(synapse: SynapseServer, body: Any) -> None:
    # ensure_ascii: lone surrogates travel as \\udxxx escapes, as a client may send them
    data = json.dumps(body).encode()
    assert_sound_json(_post_raw(synapse.gate_url + "api/request", data, "application/json"))


@fuzz_settings(60)
@given(
    data=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=latin-1", "text/plain", ""]
    ),
)
def test_the_api_never_fails_on_any_bytes(
    synapse: SynapseServer, data: bytes, content_type: str
) -> None:
    assert_sound_json(_post_raw(synapse.gate_url + "api/request", data, content_type))


def _post_raw(url: str, data: bytes, content_type: str) -> http.Response:
    """POST ``data`` as it is, with ``content_type`` (none if empty)."""
    request = urllib.request.Request(url, data=data, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    else:
        request.remove_header("Content-type")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return http.Response(resp.status, resp.headers, resp.read(), url)
    except urllib.error.HTTPError as e:
        return http.Response(e.code, e.headers, e.read(), url)


FORM_TEXT = st.one_of(st.text(), TRICKY.filter(lambda s: "\ud800" not in s and "\udfff" not in s))


@st.composite
def form_fields(draw: st.DrawFn) -> tuple[str, str]:
    """A username and an email, one or both carrying MARK among arbitrary text."""
    username = draw(st.one_of(USERNAMES, FORM_TEXT))
    email = draw(st.one_of(st.emails(), FORM_TEXT))
    where = draw(st.sampled_from(["username", "email", "both"]))
    if where in ("username", "both"):
        username = draw(st.sampled_from([MARK + username, username + MARK]))
    if where in ("email", "both"):
        email = draw(st.sampled_from([MARK + email, email + MARK, email.replace("@", MARK + "@")]))
    return username, email


@pytest.fixture(scope="module")
def session(synapse: SynapseServer) -> tuple[str, dict[str, str]]:
    return form_session(synapse)


@fuzz_settings(120)
@given(fields=form_fields())
def test_the_form_never_fails_and_never_reflects_input_raw(
    synapse: SynapseServer, session: tuple[str, dict[str, str]], fields: tuple[str, str]
) -> None:
    username, email = fields
    answer = post_form(synapse, username, email, session)
    event(f"status {answer.status}")
    assert answer.status < 500, answer
    assert answer.header("Content-Type") == "text/html; charset=utf-8"
    for raw in RAW_MARKS:
        assert raw not in answer.text, (raw, answer.text)


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({"username": "a" * 321, "email": "x@example.org"}, 400, "M_INVALID_PARAM"),
        ({"username": "capped", "email": "x" * 321}, 400, "M_INVALID_PARAM"),
        ({"username": "capped", "email": "x" * 300 + "@example.org"}, 400, None),
        ({"username": "capped"}, 400, "M_MISSING_PARAM"),
        ({"email": "x@example.org"}, 400, "M_MISSING_PARAM"),
        ({"username": 7, "email": "x@example.org"}, 400, "M_INVALID_PARAM"),
        ({"username": "capped", "email": ["x@example.org"]}, 400, "M_INVALID_PARAM"),
        (["capped", "x@example.org"], 400, "M_BAD_JSON"),
        ({"username": "capped", "email": "x@example.org", "pad": "x" * 17000}, 413, None),
    ],
)
def test_fields_are_typed_and_capped(
    synapse: SynapseServer, body: Any, status: int, errcode: str | None
) -> None:
    answer = http.post(synapse.gate_url + "api/request", json=body)
    assert answer.status == status, answer
    if errcode is not None:
        assert answer.json()["errcode"] == errcode, answer
