"""Who a `moderators` entry names (pure rules, no Synapse).

An entry is an exact Matrix ID or a regex matched against the whole Matrix ID.
Either way it may only ever name users of this server:

- an exact ID must be on this server;
- a regex is compiled with RE2 (linear time, no backreferences or lookaround),
  must end in `:<this server, escaped>` (optionally `$`), e.g.
  `@team-.*:example\\.org$`, and must not match every user of the server;
- when matching, a user of another server never matches, whatever the regex.

The same checks apply to the config key, `POST admin/moderators` and the room.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import re2

from synapse_email_gate.rules.matrix_ids import is_user_id

logger = logging.getLogger(__name__)

# Local users that a regex which matches "everyone" matches too. A real entry
# (`@team-.*:…`, `@(alice|bob):…`) misses at least one of them.
_PROBE_LOCALPARTS = ("x", "zz9-._=/+q", "0")


def is_plain_user_id(entry: str) -> bool:
    """A moderator entry is an exact Matrix ID when it looks like one, else a regex."""
    return is_user_id(entry)


def is_local_user(user_id: str, server_name: str) -> bool:
    """Whether `user_id` is a user of `server_name` (not of another server)."""
    if not user_id.startswith("@"):
        return False
    localpart, sep, domain = user_id[1:].partition(":")
    return bool(localpart) and sep == ":" and domain == server_name


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


def compile_regex(entry: str) -> re2._Regexp:
    """RE2's compiled form; ValueError with RE2's reason when it refuses the entry."""
    try:
        return re2.compile(entry, _options())
    except re2.error as e:
        reason = e.args[0] if e.args else "rejected by RE2"
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(f"'{entry}' is neither a Matrix ID nor a regex RE2 accepts: {text}") from e


def syntax_problem(entry: object) -> str | None:
    """What is wrong with `entry` without knowing the server, or None."""
    if not isinstance(entry, str) or not entry:
        return "an entry must be a Matrix ID or a regex"
    if is_plain_user_id(entry):
        return None
    try:
        compile_regex(entry)
    except ValueError as e:
        return str(e)
    return None


def _pin(server_name: str) -> re.Pattern[str]:
    """The end every regex entry must have: `:` and the server name as a literal
    (dots and brackets escaped; `-` and `:` may be), then an optional `$`."""
    parts = []
    for ch in server_name:
        if ch.isalnum():
            parts.append(re.escape(ch))
        elif ch in "-:":
            parts.append(r"\\?" + re.escape(ch))
        else:
            parts.append(r"\\" + re.escape(ch))
    return re.compile(r"\\?:" + "".join(parts) + r"\$?\Z")


def entry_problem(entry: object, server_name: str) -> str | None:
    """What is wrong with `entry` as a moderator entry on `server_name`, or None."""
    problem = syntax_problem(entry)
    if problem is not None or not isinstance(entry, str):
        return problem
    if is_plain_user_id(entry):
        if not is_local_user(entry, server_name):
            return f"'{entry}' is not a user of this server ({server_name})"
        return None
    example = f"@team-.*:{re.escape(server_name)}$"
    if _pin(server_name).search(entry) is None:
        return (
            f"the regex '{entry}' must end in :{re.escape(server_name)}$ so that it can"
            f" only match users of this server, like {example}"
        )
    regex = compile_regex(entry)
    if all(regex.fullmatch(f"@{p}:{server_name}") for p in _PROBE_LOCALPARTS):
        return f"the regex '{entry}' matches every user of {server_name}"
    return None


class ModeratorRules:
    """Compiled entries. Entries that break the rules (stored before the rules
    existed, say) match nobody; `problems` says why, for the admin listing."""

    def __init__(self, entries: Iterable[str], server_name: str) -> None:
        self._server_name = server_name
        self._exact: set[str] = set()
        self._regexes: list[re2._Regexp] = []
        self.problems: dict[str, str] = {}
        for entry in entries:
            problem = entry_problem(entry, server_name)
            if problem is not None:
                self.problems[entry] = problem
            elif is_plain_user_id(entry):
                self._exact.add(entry)
            else:
                self._regexes.append(compile_regex(entry))

    def matches(self, user_id: str) -> bool:
        if not is_local_user(user_id, self._server_name):
            return False
        if user_id in self._exact:
            return True
        return any(regex.fullmatch(user_id) is not None for regex in self._regexes)
