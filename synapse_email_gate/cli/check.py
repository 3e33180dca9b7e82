"""`synapse-email-gate check-config homeserver.yaml`: the module's config and its
policy file, validated offline, every problem named with its key.

The parsers stop at the first ConfigError. To find the others, `all_problems`
removes the offending key (Synapse would then use its default) and parses
again, until the rest parses; a list with a bad entry is also checked entry by
entry, so each bad entry is reported. A problem that only appears because an
earlier bad key was removed (`username: needs password or password_file` after
an unreadable `password_file`) is not reported twice.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from synapse.config import ConfigError  # not the module API's: see config/reader.py

from synapse_email_gate.config.gate import GateConfig
from synapse_email_gate.config.list_files import named_list_files
from synapse_email_gate.config.listeners import forwarded_in_yaml
from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.config.reader import Section
from synapse_email_gate.policy.live import read_policy_file
from synapse_email_gate.rules.moderator_entries import entry_problem

MODULE_NAME = "synapse_email_gate.EmailGate"
MAX_ROUNDS = 200
_KEY_PREFIX = re.compile(r"^([A-Za-z0-9_.\-\[\]]+): ")
_PARSER_PREFIX = "email_gate: "

Parse = Callable[[Any], object]


@dataclass(frozen=True)
class Problem:
    file: str
    key: str  # "" when the problem is about the file as a whole
    message: str

    def line(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.message}"
            if self.key
            else (f"{self.file}: {self.message}")
        )

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "key": self.key, "problem": self.message}


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    valid: list[str] = field(default_factory=list)  # what was checked and found fine

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
            "checked": self.valid,
        }


class Unreadable(Exception):
    """The homeserver config cannot be opened at all (exit code 2)."""


# --- the engine ----------------------------------------------------------------


def split_error(error: ConfigError) -> tuple[str, str]:
    """A ConfigError -> (dotted key, what is wrong), without the `email_gate: ` prefix."""
    message = str(error.msg)
    if message.startswith(_PARSER_PREFIX):
        message = message[len(_PARSER_PREFIX) :]
    key = ".".join(str(p) for p in error.path) if error.path else ""
    if not key:
        match = _KEY_PREFIX.match(message)
        key = match.group(1) if match else ""
    if key and message.startswith(key + ": "):
        message = message[len(key) + 2 :]
    return key, message


def _locate(data: object, path: list[str]) -> tuple[dict[Any, Any], Any] | None:
    """The mapping holding the last key of `path`, and that key as stored."""
    node = data
    for depth, name in enumerate(path):
        if not isinstance(node, dict):
            return None
        stored = next((k for k in node if str(k) == name), None)
        if stored is None:
            return None
        if depth == len(path) - 1:
            return node, stored
        node = node[stored]
    return None


def _nest(path: list[str], value: object) -> dict[str, Any]:
    nested: Any = value
    for name in reversed(path):
        nested = {name: nested}
    result: dict[str, Any] = nested
    return result


def _entry_problems(parse: Parse, key: str, entries: list[Any]) -> list[tuple[str, str]]:
    """Each entry of a list checked on its own: every bad entry, not just the first."""
    path = key.split(".")
    found = []
    for index, entry in enumerate(entries):
        try:
            parse(_nest(path, [entry]))
        except ConfigError as e:
            entry_key, message = split_error(e)
            if entry_key == key:
                found.append((key, re.sub(r"\bitem 0\b", f"item {index}", message)))
    return found


def _is_cascade(path: list[str], message: str, removed: list[list[str]]) -> bool:
    """Whether the problem at `path` is caused by a key removed earlier in its section."""
    leaf = path[-1] if path else ""
    for gone in removed:
        if gone[:-1] != path[:-1]:
            continue
        name = gone[-1]
        if re.search(rf"\b{re.escape(name)}\b", message) or name.startswith(leaf + "_"):
            return True
    return False


def all_problems(parse: Parse, data: object) -> list[tuple[str, str]]:
    """(key, problem) for every problem `parse` finds in `data`; [] when it parses."""
    try:
        parse(data)
        return []
    except ConfigError as e:
        error = e
    work = copy.deepcopy(data)
    found: list[tuple[str, str]] = []
    removed: list[list[str]] = []
    for _ in range(MAX_ROUNDS):
        key, message = split_error(error)
        path = key.split(".") if key else []
        # A missing key (`hash_secret: required when ...`) is set aside with its section.
        depth = len(path)
        place = _locate(work, path) if path else None
        while place is None and depth > 1:
            depth -= 1
            place = _locate(work, path[:depth])
        value = place[0][place[1]] if place is not None and depth == len(path) else None
        per_entry = _entry_problems(parse, key, value) if isinstance(value, list) else []
        if per_entry:
            found += per_entry
        elif not _is_cascade(path, message, removed):
            found.append((key, message))
        if place is None:  # nothing left to set aside: stop here
            break
        parent, stored = place
        del parent[stored]
        removed.append(path[:depth])
        try:
            parse(work)
            break
        except ConfigError as e:
            error = e
    return found


# --- homeserver.yaml and the policy file -------------------------------------------


def parse_module_config(data: Any) -> object:
    """What EmailGate.parse_config parses, without importing the module (and the reactor)."""
    return GateConfig.parse(data)


def parse_policy(data: Any) -> object:
    """The policy file's keys; the list files it names are checked apart."""
    section = Section(data, "")
    named_list_files(section, "/")
    lists = PolicyLists.from_section(section, {})
    section.finish()
    return lists


def _load_yaml(path: str) -> object:
    """The file's YAML; OSError when unreadable, yaml.YAMLError when not YAML."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def check_homeserver(path: str) -> Report:
    """Check `path`; raises Unreadable when it cannot be opened."""
    report = Report()
    try:
        config = _load_yaml(path)
    except OSError as e:
        raise Unreadable(f"{path}: cannot read: {e.strerror or e}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        report.problems.append(Problem(path, "", f"not valid YAML: {e}"))
        return report
    if not isinstance(config, dict):
        report.problems.append(Problem(path, "", "expected a mapping of settings"))
        return report
    _registration_warnings(path, config, report)
    for key in ("listeners", "worker_listeners"):
        for listener in forwarded_in_yaml(config.get(key)):
            report.warnings.append(Problem(path, key, listener.warning()))
    entries = _module_entries(path, config, report)
    if not entries:
        if not report.problems:
            report.problems.append(Problem(path, "modules", f"no {MODULE_NAME} module in modules:"))
        return report
    if len(entries) > 1:
        places = ", ".join(f"modules[{i}]" for i, _ in entries)
        report.problems.append(
            Problem(path, "modules", f"{MODULE_NAME} is listed {len(entries)} times ({places})")
        )
    for index, raw in entries:
        prefix = f"modules[{index}].config." if len(entries) > 1 else ""
        _check_module(path, prefix, raw, report, config.get("server_name"))
    return report


def _registration_warnings(path: str, config: Mapping[Any, Any], report: Report) -> None:
    if config.get("enable_registration") is not True:
        report.warnings.append(
            Problem(path, "enable_registration", "is not true: nobody can register")
        )
    if config.get("registration_requires_token") is not True:
        report.warnings.append(
            Problem(
                path,
                "registration_requires_token",
                "is not true: people can register without a token, bypassing the gate",
            )
        )


def _module_entries(path: str, config: Mapping[Any, Any], report: Report) -> list[tuple[int, Any]]:
    modules = config.get("modules")
    if modules is None:
        return []
    if not isinstance(modules, list):
        report.problems.append(Problem(path, "modules", "expected a list of modules"))
        return []
    entries = []
    for index, entry in enumerate(modules):
        if not isinstance(entry, dict):
            report.problems.append(Problem(path, f"modules[{index}]", "expected a mapping"))
        elif entry.get("module") == MODULE_NAME:
            entries.append((index, entry.get("config") or {}))
    return entries


def _check_module(path: str, prefix: str, raw: object, report: Report, server_name: object) -> None:
    problems = all_problems(parse_module_config, raw)
    for key, message in problems:
        report.problems.append(Problem(path, prefix + key if key else prefix.rstrip("."), message))
    if isinstance(server_name, str) and not any(key == "moderators" for key, _ in problems):
        for key, message in _moderator_problems(raw, server_name):
            problems.append((key, message))
            report.problems.append(Problem(path, prefix + key, message))
    if not problems:
        report.valid.append(f"{path}: {prefix}{MODULE_NAME} config")
        settings = raw if isinstance(raw, dict) else {}
        rooms = settings.get("policy_rooms")
        if isinstance(rooms, list) and rooms:
            bot = settings.get("bot_localpart") or "email-gate"
            report.valid.append(
                f"{path}: {prefix}policy_rooms: {len(rooms)} room(s), well formed; whether"
                f" the bot ({bot}) can join them shows in the log, the metrics and"
                " GET admin/policy once Synapse runs"
            )
    policy_file = raw.get("policy_file") if isinstance(raw, dict) else None
    if isinstance(policy_file, str):
        _check_policy_file(policy_file, report)


def _moderator_problems(raw: object, server_name: str) -> list[tuple[str, str]]:
    """What Synapse would refuse at start-up, knowing its server name."""
    entries = raw.get("moderators") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        return []
    found = []
    for index, entry in enumerate(entries):
        problem = entry_problem(entry, server_name)
        if problem is not None:
            found.append(("moderators", f"item {index}: {problem}"))
    return found


def check_policy_file(path: str) -> Report:
    report = Report()
    _check_policy_file(path, report)
    return report


def _check_policy_file(path: str, report: Report) -> None:
    try:
        read_policy_file(path)
    except ValueError as e:
        message = str(e)
        if not message.startswith(path + ": "):  # about a list file it names
            report.problems.append(Problem(path, "", message))
            return
        message = message[len(path) + 2 :]
        report.problems += _policy_problems(path, message)
        return
    report.valid.append(f"{path}: policy_file")


def _policy_problems(path: str, first: str) -> list[Problem]:
    try:
        data = _load_yaml(path)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        if first.startswith("cannot read") and not path.startswith("/"):
            first += " (a relative policy_file is read from the directory Synapse starts in)"
        return [Problem(path, "", first)]
    found = all_problems(parse_policy, data)
    if not found:
        return [Problem(path, "", first)]
    return [Problem(path, key, message) for key, message in found]
