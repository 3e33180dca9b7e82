"""`synapse-email-gate import`: the files of the FastAPI page this module replaces.

- `banned_ips.txt` (addresses and CIDR networks), `banned_emails.txt` (glob
  patterns, as Python's fnmatch reads them) and `banned_usernames.txt` (Python
  regexes, searched in the username) become list files in the module's syntax
  and a policy file naming them, written to `--out` (an existing file is never
  replaced unless `--overwrite`). An entry the module cannot take (a regex RE2
  refuses: backreferences, lookaround...) is reported with its file, line and
  reason, and kept in the written list as a comment.
- `registrations.json` (its log of requests: username, address, time) goes to
  `POST admin/import/registrations`, which merges it into the module's records.

`--dry-run` writes nothing and asks the server what it would import.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from synapse_email_gate.cli.client import AdminClient
from synapse_email_gate.config.list_files import parse_lines
from synapse_email_gate.rules.addresses import EmailRules
from synapse_email_gate.rules.ips import IpRules
from synapse_email_gate.rules.usernames import UsernamePatterns

OLD_IPS = "banned_ips.txt"
OLD_EMAILS = "banned_emails.txt"
OLD_USERNAMES = "banned_usernames.txt"
OLD_LOG = "registrations.json"
POLICY_NAME = "email_gate_policy.yaml"
# The list files written, by the old file they come from, and the policy key naming them.
LISTS = {
    OLD_USERNAMES: ("banned_usernames.txt", "banned_usernames_file"),
    OLD_EMAILS: ("banned_emails.txt", "banned_emails_file"),
    OLD_IPS: ("banned_ips.txt", "banned_ips_file"),
}
# Records per admin API call: within its 16 KiB body and 500 records.
BATCH_BYTES = 12_000
BATCH_RECORDS = 500


@attrs.frozen
class Problem:
    file: str
    line: int  # a line of a list, a row of the log
    message: str

    def describe(self, what: str = "line") -> str:
        return f"{self.file}: {what} {self.line}: {self.message}"


@attrs.frozen
class ConvertedList:
    source: str
    entries: tuple[str, ...]
    problems: tuple[Problem, ...]

    def text(self) -> str:
        lines = [f"# Converted by synapse-email-gate import from {self.source}."]
        lines += [f"# not imported: line {p.line}: {p.message}" for p in self.problems]
        return "\n".join([*lines, *self.entries, ""])


# --- ban lists --------------------------------------------------------------------


def convert_list(path: str, convert: Callable[[str], str]) -> ConvertedList:
    """Each entry of the old list through `convert` (ValueError: not importable)."""
    text = Path(path).read_text(encoding="utf-8")
    entries: list[str] = []
    problems: list[Problem] = []
    for line in parse_lines(text):
        try:
            entries.append(convert(line.entry))
        except ValueError as e:
            problems.append(Problem(path, line.number, str(e)))
    return ConvertedList(path, tuple(dict.fromkeys(entries)), tuple(problems))


def ip_entry(entry: str) -> str:
    IpRules.compile([entry])
    return entry


def username_entry(entry: str) -> str:
    """A Python regex, kept as it is when RE2 takes it (the old page searched it too)."""
    try:
        UsernamePatterns.compile([entry], "off")
    except ValueError as e:
        raise ValueError(str(e)) from None
    return entry


def email_entry(glob: str) -> str:
    """An fnmatch glob as a `banned_emails` entry: an address stays an address,
    `*@domain` stays (it then covers subdomains too), anything else becomes an
    anchored `/regex/`, matched against the normalised address."""
    text = glob.strip().lower()
    if not any(c in text for c in "*?[") or re.fullmatch(r"\*@[^*?\[\]@]+", text):
        entry = text
    else:
        entry = f"/^{glob_regex(text)}$/"
    EmailRules.compile([entry])
    return entry


def glob_regex(glob: str) -> str:
    """fnmatch's meaning of `glob` in RE2 syntax: `*` any run, `?` one character,
    `[...]` and `[!...]` classes; everything else literal."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = glob.find("]", i + 1 if glob[i : i + 1] in ("!", "]") else i)
            if end < 0:
                out.append(re.escape(char))
                continue
            body = glob[i:end]
            i = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            escaped = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


CONVERTERS: dict[str, Callable[[str], str]] = {
    OLD_USERNAMES: username_entry,
    OLD_EMAILS: email_entry,
    OLD_IPS: ip_entry,
}


# --- the request log -------------------------------------------------------------

_USERNAME_KEYS = ("username", "user", "localpart", "user_name", "name", "user_id", "mxid")
_EMAIL_KEYS = ("email", "mail", "email_address", "address")
_TIME_KEYS = (
    "time",
    "timestamp",
    "ts",
    "created",
    "created_at",
    "requested_at",
    "registered_at",
    "date",
    "datetime",
)
_LIST_KEYS = ("registrations", "records", "requests", "entries", "items", "data")


def read_log(path: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The log's records as `{row, username, email, time_ms}`, and its bad rows."""
    rows, problems = _log_rows(path)
    records = []
    for row, raw in rows:
        try:
            records.append({"row": row, **log_record(raw)})
        except ValueError as e:
            problems.append(Problem(path, row, str(e)))
    return records, problems


def _log_rows(path: str) -> tuple[list[tuple[int, object]], list[Problem]]:
    """(row number from 1, raw row): a JSON list, an object holding one under a
    usual key, an object of rows keyed by address, or JSON Lines."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        rows: list[tuple[int, object]] = []
        problems: list[Problem] = []
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise ValueError(f"{path}: not JSON: {whole}") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append(Problem(path, number, f"not JSON: {e.msg}"))
        return rows, problems
    if isinstance(data, dict):
        for key in _LIST_KEYS:
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [
                {"email": key, **value} if isinstance(value, dict) else value
                for key, value in data.items()
            ]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of records, got {type(data).__name__}")
    return list(enumerate(data, start=1)), []


def log_record(raw: object) -> dict[str, Any]:
    """`{username, email, time_ms}` of one row; ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    username = _field(raw, _USERNAME_KEYS, "username")
    if not isinstance(username, str) or not username.strip():
        raise ValueError(f"username should be a string, got {username!r}")
    localpart = username.strip().lower().removeprefix("@").split(":", 1)[0]
    email = _field(raw, _EMAIL_KEYS, "address")
    if not isinstance(email, str) or "@" not in email:
        raise ValueError(f"email should be an address, got {email!r}")
    return {
        "username": localpart,
        "email": email.strip(),
        "time_ms": time_ms(_field(raw, _TIME_KEYS, "time")),
    }


def _field(raw: dict[str, Any], keys: Sequence[str], what: str) -> object:
    for key in keys:
        if raw.get(key) is not None:
            return raw[key]
    raise ValueError(f"no {what} field (one of {', '.join(keys)})")


def time_ms(value: object) -> int:
    """A time as the old log may write it: ISO 8601 (UTC unless it says otherwise),
    or seconds or milliseconds since 1970, as a number or a string of digits."""
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Before 5138 in seconds, or after 1973 in milliseconds.
        return int(value) if value >= 1e11 else int(value * 1000)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"time {value!r}: not a date and time like 2024-05-01T12:00:00Z"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return int(moment.timestamp() * 1000)
    raise ValueError(f"time should be a date or a number, got {value!r}")


def batches(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        length = len(json.dumps(record)) + 2
        if batch and (size + length > BATCH_BYTES or len(batch) >= BATCH_RECORDS):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += length
    if batch:
        yield batch


def send_records(
    client: AdminClient, records: list[dict[str, Any]], dry_run: bool
) -> dict[str, Any]:
    """Every record through the admin API; the answers summed."""
    total: dict[str, Any] = {
        "dry_run": dry_run,
        "imported": 0,
        "rejected": [],
        "addresses": 0,
        "new_addresses": 0,
        "with_accounts": 0,
    }
    for batch in batches(records):
        answer = client.post("import/registrations", {"records": batch, "dry_run": dry_run})
        if not isinstance(answer, dict):
            continue
        for key in ("imported", "addresses", "new_addresses", "with_accounts"):
            value = answer.get(key)
            total[key] += value if isinstance(value, int) else 0
        rejected = answer.get("rejected")
        if isinstance(rejected, list):
            total["rejected"] += rejected
    return total


# --- writing ------------------------------------------------------------------------


def policy_text(names: Sequence[str]) -> str:
    keys = {LISTS[old][1]: LISTS[old][0] for old in names}
    header = (
        "# Written by synapse-email-gate import. Point policy_file at this file;\n"
        "# the lists it names are read from this directory, and reloaded when they change.\n"
    )
    return header + yaml.safe_dump(keys, sort_keys=False)


def outputs(converted: dict[str, ConvertedList]) -> dict[str, str]:
    """File name -> text, for the lists converted and the policy file naming them."""
    files = {LISTS[old][0]: lists.text() for old, lists in converted.items()}
    if converted:
        files[POLICY_NAME] = policy_text(list(converted))
    return files


def write_outputs(directory: str, files: dict[str, str], overwrite: bool) -> list[str]:
    """Write every file, or none: existing ones are named in a ValueError unless
    `overwrite`. The paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in files}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(
            "would replace " + ", ".join(existing) + " (give --overwrite, or another --out)"
        )
    for name, path in paths.items():
        aside = path + ".new"
        with open(aside, "w", encoding="utf-8") as f:
            f.write(files[name])
        os.replace(aside, path)
    return list(paths.values())
