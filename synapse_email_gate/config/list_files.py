"""Plain-text ban lists a policy file names: one entry per line.

`banned_usernames_file`, `banned_emails_file` and `banned_ips_file` each take a
path or a list of paths (relative ones are relative to the policy file). A line
holds one entry, written as in the inline list; blank lines and comments (`#` at
the start of a line, or after a space) are skipped. Every entry is validated
like an inline one, and a bad entry refuses the file naming its path and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import attrs

from synapse_email_gate.config.policy_lists import BAN_KINDS, BanEntry, BanKind
from synapse_email_gate.config.reader import Section
from synapse_email_gate.rules.usernames import PatternError

# The key naming the files of each kind, e.g. banned_usernames_file.
FILE_KEYS = {f"{kind.key}_file": kind for kind in BAN_KINDS}


@attrs.frozen
class ListFile:
    path: str  # absolute
    kind: BanKind


@attrs.frozen
class ListLine:
    number: int  # from 1
    entry: str


def named_list_files(section: Section, base_dir: str) -> tuple[ListFile, ...]:
    """The list files `section` names, paths resolved against `base_dir`."""
    found: list[ListFile] = []
    none: tuple[str, ...] = ()
    for key, kind in FILE_KEYS.items():
        for path in section.convert(key, none, _paths):
            found.append(ListFile(os.path.normpath(os.path.join(base_dir, path)), kind))
    return tuple(found)


def read_list_files(files: Iterable[ListFile]) -> dict[str, tuple[BanEntry, ...]]:
    """The entries of every file, by the key of their kind (`banned_ips`...); raises
    ValueError naming the file and line of the first bad entry."""
    entries: dict[str, list[BanEntry]] = {}
    for list_file in files:
        entries.setdefault(list_file.kind.key, []).extend(read_list_file(list_file))
    return {key: tuple(found) for key, found in entries.items()}


def read_list_file(list_file: ListFile) -> tuple[BanEntry, ...]:
    try:
        with open(list_file.path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"{list_file.path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{list_file.path}: not UTF-8 text ({e.reason})") from e
    lines = parse_lines(text)
    problem = first_bad_line(list_file.kind, lines)
    if problem is not None:
        line, message = problem
        where = f"{list_file.path}:{line.number}" if line is not None else list_file.path
        raise ValueError(f"{where}: {message}")
    return tuple(BanEntry(match=line.entry) for line in lines)


def parse_lines(text: str) -> list[ListLine]:
    """The entries of a list file's text, with their line numbers."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = strip_comment(raw).strip()
        if entry:
            found.append(ListLine(number, entry))
    return found


def strip_comment(line: str) -> str:
    """`line` without its comment: `#` at the start or after a space or tab."""
    if line.lstrip().startswith("#"):
        return ""
    for index, char in enumerate(line):
        if char == "#" and line[index - 1] in " \t":
            return line[:index]
    return line


def first_bad_line(kind: BanKind, lines: list[ListLine]) -> tuple[ListLine | None, str] | None:
    """The first line `kind` refuses and why, or None when all compile. The whole
    list is compiled first (fast); entries are tried one by one only when it fails."""
    try:
        kind.compile([line.entry for line in lines])
    except PatternError as e:
        if e.index is not None:
            return lines[e.index], str(e)
        whole = str(e)
    except ValueError as e:
        whole = str(e)
    else:
        return None
    for line in lines:
        try:
            kind.compile([line.entry])
        except ValueError as e:
            return line, str(e)
    return None, whole  # each entry alone is fine, together they are not (too large)


def _paths(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise TypeError(f"expected a path or a list of paths, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise TypeError(f"expected a path, got {item!r}")
    return tuple(items)
