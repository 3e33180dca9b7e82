"""A small typed reader for nested YAML config that names the key in every error,
and the value checks the sections share (secrets, Matrix IDs, rooms)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

# The class synapse.module_api.errors exports, imported from where it is defined:
# importing the module API installs Twisted's reactor, and `synapse-email-gate
# check-config` parses the config without Synapse running.
from synapse.config import ConfigError

from synapse_email_gate.config.durations import format_duration, parse_duration_ms
from synapse_email_gate.rules.matrix_ids import is_localpart, is_room, is_user_id

T = TypeVar("T")


class Section:
    """One mapping of the config, with the dotted path leading to it.

    Every getter records the key it read; `finish()` then refuses keys nobody
    read, suggesting the closest known key.
    """

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got {_kind(data)}")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._known: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {problem}", path=self.key(name).split("."))

    def has(self, name: str) -> bool:
        self._known.add(name)
        return self._data.get(name) is not None

    def raw(self, name: str, default: object = None) -> Any:
        self._known.add(name)
        value = self._data.get(name)
        return default if value is None else value

    def convert(self, name: str, default: T, convert: Callable[[Any], T]) -> T:
        """Read a value and convert it; ValueError/TypeError become ConfigError naming the key."""
        if not self.has(name):
            return default
        try:
            return convert(self._data[name])
        except (ValueError, TypeError) as e:
            raise self.error(name, str(e)) from e

    def string(self, name: str, default: str) -> str:
        return self.convert(name, default, _string)

    def optional_string(self, name: str) -> str | None:
        return self.convert(name, None, _string)

    def boolean(self, name: str, default: bool) -> bool:
        return self.convert(name, default, _boolean)

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        return self.convert(name, default, lambda v: _integer(v, minimum, maximum))

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        return self.convert(name, default, lambda v: _number(v, minimum))

    def duration_ms(self, name: str, default_ms: int, minimum_ms: int = 0) -> int:
        def convert(value: object) -> int:
            ms = parse_duration_ms(value)
            if ms < minimum_ms:
                raise ValueError(f"must be at least {format_duration(minimum_ms)}, got {value!r}")
            return ms

        return self.convert(name, default_ms, convert)

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        options = tuple(choices)

        def convert(value: object) -> str:
            if value is False and "off" in options:
                value = "off"  # YAML reads a bare `off` as false
            if value not in options:
                raise ValueError(f"must be one of {', '.join(options)}; got {value!r}")
            return str(value)

        return self.convert(name, default, convert)

    def strings(self, name: str) -> tuple[str, ...]:
        return self.convert(name, (), string_list)

    def secret(self, name: str) -> str | None:
        """`name`, or the content of the file `<name>_file` (stripped); never both."""
        value = self.optional_string(name)
        file_key = f"{name}_file"
        path = self.optional_string(file_key)
        if value is not None and path is not None:
            raise self.error(file_key, f"give either {name} or {file_key}, not both")
        if path is not None:
            value = self.read_file(file_key, path)
        return value

    def read_file(self, name: str, path: str) -> str:
        """The stripped content of the file `path` that `name` names."""
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise self.error(name, f"cannot read {path!r}: {e.strerror}") from e

    def section(self, name: str) -> Section:
        self._known.add(name)
        return Section(self._data.get(name), self.key(name))

    def finish(self) -> None:
        for name in self._data:
            if name in self._known:
                continue
            close = difflib.get_close_matches(str(name), sorted(self._known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            key = self.key(str(name))
            raise ConfigError(f"{key}: unknown key{hint}", path=key.split("."))


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _integer(value: object, minimum: int, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be at most {maximum}, got {value}")
    return value


def _number(value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    return float(value)


def string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of strings, got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"item {index} should be a string, got {item!r}")
    return tuple(value)


def room(value: object) -> str:
    if not isinstance(value, str) or not is_room(value):
        raise ValueError(
            f"expected a room ID (!abc:example.org) or alias (#mods:example.org), got {value!r}"
        )
    return value


def user_id(value: object) -> str:
    if not isinstance(value, str) or not is_user_id(value):
        raise ValueError(f"expected a local Matrix ID like @welcome:example.org, got {value!r}")
    return value


def localpart(value: object) -> str:
    if not isinstance(value, str) or not is_localpart(value):
        raise ValueError(f"expected a user localpart like email-gate, got {value!r}")
    return value
