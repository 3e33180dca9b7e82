"""The policy in force: homeserver.yaml's lists plus the reloadable `policy_file`.

Every process checks the identity (mtime, size, inode) of the file and of the
plain-text list files it names (config/list_files.py) every
`policy_check_interval` and reloads when one changed; `reload()` does it now.
A file that does not parse or validate is refused, the error is logged and
returned, and the previous policy stays in force. The compiled policy is also
rebuilt when a ban entry with an expiry runs out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import attrs
import yaml
from synapse.config import ConfigError  # not the module API's: see config/reader.py

from synapse_email_gate import metrics
from synapse_email_gate.config.list_files import ListFile, named_list_files, read_list_files
from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.config.reader import Section
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.rules.policy_rules import RoomRules

logger = logging.getLogger(__name__)

# libyaml's safe loader when PyYAML was built with it (its wheels are): the
# pure-Python one took 0.5 s of a 10,000-pattern reload, on the reactor.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyFileError(ValueError):
    """A policy file refused; `list_files` are the list files it names (so far),
    to be watched for a fix."""

    def __init__(self, message: str, list_files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.list_files = list_files


@attrs.frozen
class ReloadResult:
    ok: bool
    message: str
    # Open requests (and their tokens) the new policy revoked (policy/revocation.py).
    revoked: int = 0


def read_policy_file(path: str) -> PolicyLists:
    """Parse and validate a policy file and its list files; raises PolicyFileError
    with a readable message."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except OSError as e:
        raise PolicyFileError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise PolicyFileError(f"{path}: not valid YAML: {e}") from e
    except UnicodeDecodeError as e:
        raise PolicyFileError(f"{path}: not UTF-8 text ({e.reason})") from e
    files: tuple[ListFile, ...] = ()
    try:
        section = Section(data, "")
        files = named_list_files(section, os.path.dirname(os.path.abspath(path)))
        paths = tuple(dict.fromkeys(f.path for f in files))
        try:
            from_files = read_list_files(files)
        except ValueError as e:
            raise PolicyFileError(str(e), paths) from e
        lists = PolicyLists.from_section(section, from_files)
        section.finish()
    except ConfigError as e:
        raise PolicyFileError(f"{path}: {e.msg}", tuple(f.path for f in files)) from e
    return attrs.evolve(lists, list_files=paths)


class LivePolicy:
    def __init__(
        self,
        base: PolicyLists,
        policy_file: str | None,
        now_ms: Callable[[], int],
        server_name: str = "",
    ) -> None:
        self._server_name = server_name  # for the metrics' label
        self._base = base
        self._file = policy_file
        self._now_ms = now_ms
        self._file_lists = PolicyLists()
        self._stored_lists = PolicyLists()
        # The list files the policy file named when last read, watched with it.
        self._list_files: tuple[str, ...] = ()
        self._file_identity: Identity | None = None
        self._settling_identity: Identity | None = None
        self.current = Policy.build([base], now_ms())
        if policy_file is not None:
            result = self.reload()
            if not result.ok:
                raise ConfigError(f"policy_file: {result.message}")

    def reload(self) -> ReloadResult:
        if self._file is None:
            return ReloadResult(ok=True, message="no policy_file configured")
        try:
            identity, lists = self._read(self._file)
            policy = Policy.build(
                [self._base, lists, self._stored_lists], self._now_ms(), self.current.room_rules
            )
        except ValueError as e:
            logger.error("policy file refused, previous policy stays in force: %s", e)
            metrics.policy_reloaded(self._server_name, ok=False)
            return ReloadResult(ok=False, message=str(e))
        self.current = policy
        self._file_lists = lists
        self._file_identity = identity
        logger.info("policy file %s loaded", self._file)
        metrics.policy_reloaded(self._server_name, ok=True)
        return ReloadResult(ok=True, message=f"{self._file} loaded")

    def _read(self, path: str) -> tuple[Identity, PolicyLists]:
        """The file and its list files, read while none of them changed."""
        # Read once more when it names other list files than last time: their
        # identity before reading is known only then.
        for _ in range(2):
            before = _identities(path, self._list_files)
            try:
                lists = read_policy_file(path)
            except PolicyFileError as e:
                self._list_files = e.list_files
                raise
            if lists.list_files != self._list_files:
                self._list_files = lists.list_files
                continue
            if _identities(path, self._list_files) != before:
                break
            return before, lists
        raise ValueError(f"{path}: it or a list file changed while being read; try again")

    def check(self) -> bool:
        """Periodic: reload a changed file, drop expired ban entries. True when a
        changed file was loaded (its new bans may match open requests)."""
        reloaded = self._reload_if_changed()
        expiry = self.current.next_expiry_ts
        if expiry is not None and expiry <= self._now_ms():
            self._rebuild()
            logger.info("expired ban entries no longer apply")
        return reloaded

    def set_stored(self, lists: PolicyLists) -> None:
        """The bans moderators added through the admin API (validated when added).
        The same lists again (at start there are often none) change nothing: the
        patterns are not compiled again beside the ones in force."""
        if lists == self._stored_lists:
            return
        self._stored_lists = lists
        self._rebuild()

    def layers(self) -> dict[str, PolicyLists]:
        """The lists in force by where they come from, for moderators."""
        return {"config": self._base, "policy_file": self._file_lists, "stored": self._stored_lists}

    def _rebuild(self) -> None:
        self.current = Policy.build(
            [self._base, self._file_lists, self._stored_lists],
            self._now_ms(),
            self.current.room_rules,
        )

    def set_room_rules(self, rules: RoomRules) -> None:
        """The ban rules of the followed policy rooms (policy/rooms.py); the lists
        are not compiled again."""
        self.current = attrs.evolve(self.current, room_rules=rules)

    def _reload_if_changed(self) -> bool:
        if self._file is None:
            return False
        try:
            identity = _identities(self._file, self._list_files)
        except ValueError as e:
            if self._file_identity is not None:
                logger.error("policy file unreadable, previous policy stays in force: %s", e)
                self._file_identity = None
            return False
        if identity == self._file_identity:
            return False
        # Reload only once the file has stood still for one interval: an
        # editor rewriting it in place may have written only part of it.
        if identity != self._settling_identity:
            self._settling_identity = identity
            return False
        result = self.reload()
        if not result.ok:
            # Don't retry an unchanged broken file every few seconds (the
            # reload may have named other list files to watch).
            try:
                self._file_identity = _identities(self._file, self._list_files)
            except ValueError:
                self._file_identity = None
        return result.ok


Identity = tuple[tuple[int, int, int], ...]


_MISSING = (0, 0, 0)


def _identities(path: str, list_files: tuple[str, ...]) -> Identity:
    """mtime, size and inode of the policy file and of each list file. A missing
    list file has an identity too (reading it says what is wrong), so creating
    it is a change."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from e
    found = [(st.st_mtime_ns, st.st_size, st.st_ino)]
    for name in list_files:
        try:
            st = os.stat(name)
        except OSError:
            found.append(_MISSING)
        else:
            found.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)
