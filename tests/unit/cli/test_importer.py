"""`synapse-email-gate import`, the offline half: converting the FastAPI page's ban
lists (with what cannot be taken reported by file, line and reason) and reading its
request log in the shapes such a log takes (bad rows named by number)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from synapse_email_gate.cli import importer
from synapse_email_gate.rules.addresses import EmailRules, parse_email

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("glob", "entry"),
    [
        ("Spam@Example.com", "spam@example.com"),
        ("*@mailinator.com", "*@mailinator.com"),
        ("spam*@example.com", "/^spam.*@example\\.com$/"),
        ("*@*.ru", "/^.*@.*\\.ru$/"),
        ("user?@example.org", "/^user.@example\\.org$/"),
        ("[abc]x@example.org", "/^[abc]x@example\\.org$/"),
        ("[!abc]x@example.org", "/^[^abc]x@example\\.org$/"),
    ],
)
def test_email_globs_become_entries(glob: str, entry: str) -> None:
    assert importer.email_entry(glob) == entry


@pytest.mark.parametrize(
    "address",
    ["spam1@example.com", "spammer@example.com", "ham@example.com", "xspam@example.com"],
)
def test_a_converted_glob_bans_what_fnmatch_matched(address: str) -> None:
    glob = "spam*@example.com"
    rules = EmailRules.compile([importer.email_entry(glob)])
    banned = rules.first_match(parse_email(address)) is not None
    assert banned == fnmatch.fnmatchcase(address, glob)


def test_a_bad_address_glob_is_not_importable() -> None:
    with pytest.raises(ValueError, match="not a valid address"):
        importer.email_entry("nobody@")


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def test_usernames_re2_cannot_take_are_reported_with_line_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "banned_usernames.txt",
        "# old list\n^admin$\n(a)\\1\n\nfoo(?=bar)\n(?<!x)y\n.*\nspam.*\n",
    )
    converted = importer.convert_list(path, importer.username_entry)
    assert converted.entries == ("^admin$", "spam.*")
    problems = {p.line: p.message for p in converted.problems}
    assert sorted(problems) == [3, 5, 6, 7]
    assert "invalid escape sequence" in problems[3] or "backreference" in problems[3], problems
    assert "(?=" in problems[5] or "perl" in problems[5].lower(), problems
    assert "matches every input" in problems[7]
    # The written list keeps them as comments: nothing is dropped silently.
    text = converted.text()
    assert "# not imported: line 3: " in text
    assert "# not imported: line 5: " in text
    assert text.endswith("^admin$\nspam.*\n")


def test_ips_are_checked_and_bad_ones_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "banned_ips.txt", "203.0.113.7\n198.51.100.0/24\nnot-an-ip\n::1\n")
    converted = importer.convert_list(path, importer.ip_entry)
    assert converted.entries == ("203.0.113.7", "198.51.100.0/24", "::1")
    assert [(p.line, "not-an-ip" in p.message) for p in converted.problems] == [(3, True)]


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01 12:00:00",
        "2024-05-01T12:00:00.000000",
        1_714_564_800,
        1_714_564_800.0,
        T0,
        "1714564800",
    ],
)
def test_times_in_the_usual_shapes(value: object) -> None:
    assert importer.time_ms(value) == T0


@pytest.mark.parametrize("value", ["yesterday", True, None, [1]])
def test_a_bad_time_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="time"):
        importer.time_ms(value)


def test_a_log_as_a_list_with_field_variants(tmp_path: Path) -> None:
    rows = [
        {"username": "Alice", "email": "alice@example.org", "time": "2024-05-01T12:00:00Z"},
        {"user": "@bob:example.org", "mail": "bob@example.org", "timestamp": 1_714_564_800},
        {"username": "carol", "email": "carol@example.org"},  # no time
        {"username": "dave", "time": "2024-05-01T12:00:00Z"},  # no address
        "not an object",
        {"localpart": "erin", "email_address": "erin@example.org", "created_at": "nonsense"},
    ]
    path = write(tmp_path, "registrations.json", json.dumps(rows))
    records, problems = importer.read_log(path)
    assert records == [
        {"row": 1, "username": "alice", "email": "alice@example.org", "time_ms": T0},
        {"row": 2, "username": "bob", "email": "bob@example.org", "time_ms": T0},
    ]
    described = [p.describe("row") for p in problems]
    assert [p.line for p in problems] == [3, 4, 5, 6]
    assert described[0].startswith(f"{path}: row 3: no time field")
    assert "no address field" in described[1]
    assert "expected an object" in described[2]
    assert "'nonsense'" in described[3]


def test_a_log_wrapped_in_an_object_or_keyed_by_address(tmp_path: Path) -> None:
    wrapped = {"registrations": [{"username": "a", "email": "a@example.org", "time": T0}]}
    path = write(tmp_path, "wrapped.json", json.dumps(wrapped))
    assert importer.read_log(path)[0] == [
        {"row": 1, "username": "a", "email": "a@example.org", "time_ms": T0}
    ]
    keyed = {"b@example.org": {"username": "b", "time": "2024-05-01T12:00:00Z"}}
    path = write(tmp_path, "keyed.json", json.dumps(keyed))
    assert importer.read_log(path)[0] == [
        {"row": 1, "username": "b", "email": "b@example.org", "time_ms": T0}
    ]


def test_a_log_in_json_lines_names_its_bad_lines(tmp_path: Path) -> None:
    text = (
        json.dumps({"username": "a", "email": "a@example.org", "time": T0})
        + "\n{broken\n\n"
        + json.dumps({"username": "c", "email": "c@example.org", "time": T0})
        + "\n"
    )
    path = write(tmp_path, "registrations.json", text)
    records, problems = importer.read_log(path)
    assert [(r["row"], r["username"]) for r in records] == [(1, "a"), (4, "c")]
    assert [(p.line, p.message.startswith("not JSON")) for p in problems] == [(2, True)]


def test_a_log_that_is_not_json_at_all_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "registrations.json", "{nope")
    with pytest.raises(ValueError, match="not JSON"):
        importer.read_log(path)


def test_batches_stay_within_the_api_limits() -> None:
    records = [
        {"row": i, "username": f"user{i}", "email": f"user{i}@example.org", "time_ms": T0}
        for i in range(1, 1201)
    ]
    sent = list(importer.batches(records))
    assert [r for batch in sent for r in batch] == records
    assert all(len(b) <= 500 and len(json.dumps({"records": b})) < 16_000 for b in sent)


def test_existing_files_are_not_replaced_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "banned_ips.txt").write_text("keep me\n")
    files = {"banned_ips.txt": "203.0.113.7\n", "email_gate_policy.yaml": "x: 1\n"}
    with pytest.raises(ValueError, match=r"would replace .*banned_ips\.txt"):
        importer.write_outputs(str(tmp_path), files, overwrite=False)
    assert (tmp_path / "banned_ips.txt").read_text() == "keep me\n"
    assert not (tmp_path / "email_gate_policy.yaml").exists()  # all or nothing
    importer.write_outputs(str(tmp_path), files, overwrite=True)
    assert (tmp_path / "banned_ips.txt").read_text() == "203.0.113.7\n"
