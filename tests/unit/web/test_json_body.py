"""The one reader of JSON request bodies (web/http.py): every malformed body is a
JsonProblem with an errcode, never an exception."""

from __future__ import annotations

import json

import pytest

from synapse_email_gate.web.http import (
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    JsonProblem,
    form_fields,
    parse_json_object,
    readable,
)


def nested(depth: int) -> bytes:
    """An object whose innermost value sits `depth` levels deep (the object is level 1)."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("body", "errcode", "says"),
    [
        (b"[" * 15_000, "M_BAD_JSON", "nested"),
        (b'{"a":' * 15_000, "M_BAD_JSON", "nested"),
        (b"{" * 200_000, "M_NOT_JSON", "not valid JSON"),
        (nested(MAX_JSON_DEPTH + 1), "M_BAD_JSON", "nested"),
        (nested(900), "M_BAD_JSON", "nested"),  # parses within Python's limit, still refused
        (b"\xff\xfe{}", "M_NOT_JSON", "UTF-8"),
        (b'{"username": "\xc3"}', "M_NOT_JSON", "UTF-8"),
        ('{"a": "é"}'.encode("utf-16"), "M_NOT_JSON", "UTF-8"),
        (b"\xef\xbb\xbf{}", "M_NOT_JSON", "not valid JSON"),
        (b"", "M_NOT_JSON", "not valid JSON"),
        (b"{", "M_NOT_JSON", "not valid JSON"),
        (b"{'a': 1}", "M_NOT_JSON", "not valid JSON"),
        (b'{"a": NaN}', "M_NOT_JSON", "NaN"),
        (b'{"a": Infinity}', "M_NOT_JSON", "Infinity"),
        (b'{"a": -Infinity}', "M_NOT_JSON", "Infinity"),
        (b'{"a": 1e400}', "M_BAD_JSON", "number out of range"),
        (b'{"a": -1e400}', "M_BAD_JSON", "number out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "M_BAD_JSON", "integer out of range"),
        (b'{"a": ' + str(MAX_JSON_INT + 1).encode() + b"}", "M_BAD_JSON", "integer"),
        (b'{"a": -' + str(MAX_JSON_INT + 1).encode() + b"}", "M_BAD_JSON", "integer"),
        (b'{"email": "a@example.org", "email": "b@example.org"}', "M_BAD_JSON", "duplicate"),
        (b'{"x": {"k": 1, "k": 2}}', "M_BAD_JSON", "duplicate"),
        (b'{"username": "\\ud800"}', "M_BAD_JSON", "Unicode"),
        (b'{"\\udfff": 1}', "M_BAD_JSON", "Unicode"),
        (b'{"a": ["ok", {"b": "x\\ud83d"}]}', "M_BAD_JSON", "Unicode"),
        (b'{"username": "a\\u0000b"}', "M_BAD_JSON", "NUL"),
        (b'{"a\\u0000": 1}', "M_BAD_JSON", "NUL"),
        (b'{"a": [{"b": "\\u0000"}]}', "M_BAD_JSON", "NUL"),
        (b"[]", "M_BAD_JSON", "object"),
        (b'"text"', "M_BAD_JSON", "object"),
        (b"null", "M_BAD_JSON", "object"),
        (b"12", "M_BAD_JSON", "object"),
    ],
)
def test_a_malformed_body_is_a_problem_with_an_errcode(
    body: bytes, errcode: str, says: str
) -> None:
    problem = parse_json_object(body)
    assert isinstance(problem, JsonProblem), problem
    assert problem.errcode == errcode
    assert says in problem.message
    assert problem.json() == {"errcode": errcode, "error": problem.message}


@pytest.mark.parametrize(
    "value",
    [
        {"username": "alice", "email": "alice@example.org"},
        {"username": "zoë", "email": "x@bücher.de", "reason": "😀 a real pair"},
        {"uses_allowed": MAX_JSON_INT, "expiry": -MAX_JSON_INT, "f": 2.5, "g": -1e300},
        {"tokens": ["a", "b"], "confirm": True, "n": None},
        json.loads(nested(MAX_JSON_DEPTH)),
    ],
)
def test_a_good_object_comes_back_as_it_was_sent(value: dict[str, object]) -> None:
    assert parse_json_object(json.dumps(value).encode()) == value
    assert parse_json_object(json.dumps(value, ensure_ascii=False).encode()) == value


def test_the_depth_limit_is_exactly_max_json_depth() -> None:
    assert isinstance(parse_json_object(nested(MAX_JSON_DEPTH)), dict)
    assert isinstance(parse_json_object(nested(MAX_JSON_DEPTH + 1)), JsonProblem)


def test_a_nul_in_url_or_form_text_reads_as_the_replacement_character() -> None:
    assert readable("a\x00b") == "a\ufffdb"
    assert readable("plain") == "plain"
    assert form_fields(b"token=a%00b&csrf=x") == {"token": "a\ufffdb", "csrf": "x"}
