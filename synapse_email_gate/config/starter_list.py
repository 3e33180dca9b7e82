"""The starter list of abusive username patterns shipped with the package.

Opt-in (`banned_usernames_starter: true`): the patterns are in
`lists/starter_usernames.txt`, in the format of a `banned_usernames_file`, each
documented in docs/rules.md and tested against ordinary names.
"""

from __future__ import annotations

import functools
from importlib import resources

from synapse_email_gate.config.list_files import parse_lines

STARTER_USERNAMES = "starter_usernames.txt"


@functools.cache
def starter_username_patterns() -> tuple[str, ...]:
    text = (
        resources.files("synapse_email_gate")
        .joinpath("lists", STARTER_USERNAMES)
        .read_text(encoding="utf-8")
    )
    return tuple(line.entry for line in parse_lines(text))
