"""Matrix policy lists (MSC2313): which rules of the followed rooms ban a name here.

Pure, no Synapse. A rule is a state event of one of `RULE_TYPES` whose content has
an `entity` glob (`*` any run of characters, `?` one) and a `recommendation`; only
bans (`BAN_RECOMMENDATIONS`) count. A rule bans a localpart when its glob matches
the whole Matrix ID `@<localpart>:<this server>`. Every glob is translated to an
anchored regex with everything but `*` and `?` escaped, and all of them are
matched together in one RE2 set (rules/usernames.PatternSet): linear time, no
backtracking, however many rules the rooms publish.

Rules that cannot name a user of this server (another server, not a user ID) and
rules that would ban every name are not applied: they are kept, with the reason,
so that moderators can see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from synapse_email_gate.rules.usernames import PatternError, PatternSet

# The current type first, then the legacy ones Mjolnir and Draupnir still read.
RULE_TYPES = ("m.policy.rule.user", "m.room.rule.user", "org.matrix.mjolnir.rule.user")
BAN_RECOMMENDATIONS = frozenset({"m.ban", "org.matrix.mjolnir.ban"})
# A Matrix ID is at most 255 bytes; a longer glob is not a rule about users.
MAX_ENTITY_LENGTH = 255
# Names a rule must not match all of: a rule matching these bans every name.
_EVERYONE_PROBES = ("x", "0", "zz9-._=/+")

OTHER_SERVER = "names another server"
NOT_A_USER = "not a user ID"
EVERYONE = "matches every name on this server"
UNUSABLE = "cannot be matched"


@attrs.frozen
class RoomRule:
    """One ban rule, as published in a policy room."""

    room: str  # the policy_rooms entry (alias or room ID)
    room_id: str
    event_type: str
    state_key: str
    entity: str
    reason: str | None
    sender: str
    event_id: str

    def describe(self) -> str:
        return f"{self.entity} ({self.event_type} in {self.room})"


def parse_rule(
    room: str,
    room_id: str,
    event_type: str,
    state_key: str,
    content: Mapping[str, object],
    sender: str,
    event_id: str,
) -> RoomRule | None:
    """The ban rule this state event holds; None for anything else (another type, a
    recommendation other than a ban, an emptied or redacted rule)."""
    if event_type not in RULE_TYPES:
        return None
    entity = content.get("entity")
    if not isinstance(entity, str) or not entity or len(entity) > MAX_ENTITY_LENGTH:
        return None
    try:
        entity.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no Matrix ID holds one
        return None
    if content.get("recommendation") not in BAN_RECOMMENDATIONS:
        return None
    reason = content.get("reason")
    return RoomRule(
        room=room,
        room_id=room_id,
        event_type=event_type,
        state_key=state_key,
        entity=entity,
        reason=reason if isinstance(reason, str) and reason else None,
        sender=sender,
        event_id=event_id,
    )


def glob_regex(glob: str) -> str:
    """The anchored regex of a glob: `*` any run, `?` one character, the rest literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return "^" + "".join(parts) + "$"


def _glob_matches(glob: str, text: str) -> bool:
    return re.fullmatch(glob_regex(glob)[1:-1], text, re.IGNORECASE | re.DOTALL) is not None


def why_ignored(entity: str, server_name: str) -> str | None:
    """Why a rule with this entity never applies here, or None when it may."""
    if entity[0] not in "@*?":
        return NOT_A_USER
    _, colon, server_glob = entity.partition(":")
    if colon and "*" not in entity.split(":", 1)[0] and not _glob_matches(server_glob, server_name):
        return OTHER_SERVER
    if all(_glob_matches(entity, f"@{probe}:{server_name}") for probe in _EVERYONE_PROBES):
        return EVERYONE
    return None


class RoomRules:
    """The ban rules in force from every followed room, compiled into one RE2 set."""

    __slots__ = ("_owners", "_patterns", "ignored", "rules", "server_name")

    def __init__(
        self,
        server_name: str,
        rules: tuple[RoomRule, ...],
        ignored: tuple[tuple[RoomRule, str], ...],
        patterns: PatternSet,
        owners: tuple[tuple[int, ...], ...],
    ) -> None:
        self.server_name = server_name
        self.rules = rules
        self.ignored = ignored
        self._patterns = patterns
        self._owners = owners  # per pattern: the indices of the rules with that glob

    @classmethod
    def compile(cls, rules: Iterable[RoomRule], server_name: str) -> RoomRules:
        applied: list[RoomRule] = []
        ignored: list[tuple[RoomRule, str]] = []
        for rule in rules:
            reason = why_ignored(rule.entity, server_name)
            if reason is None:
                applied.append(rule)
            else:
                ignored.append((rule, reason))
        while True:
            by_pattern: dict[str, list[int]] = {}
            for index, rule in enumerate(applied):
                by_pattern.setdefault(glob_regex(rule.entity.lower()), []).append(index)
            try:
                patterns = PatternSet.compile(list(by_pattern))
            except PatternError as e:
                # Not expected of an escaped glob; if RE2 refuses one anyway, that
                # rule is set aside rather than the whole list.
                if e.index is None:
                    raise
                bad = set(list(by_pattern.values())[e.index])
                ignored += [(applied[i], f"{UNUSABLE}: {e.reason}") for i in sorted(bad)]
                applied = [rule for i, rule in enumerate(applied) if i not in bad]
                continue
            return cls(
                server_name,
                tuple(applied),
                tuple(ignored),
                patterns,
                tuple(tuple(owners) for owners in by_pattern.values()),
            )

    @classmethod
    def empty(cls, server_name: str = "") -> RoomRules:
        return cls(server_name, (), (), PatternSet.empty(), ())

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The texts of the compiled patterns, one per distinct glob."""
        return self._patterns.sources

    def matching(self, localpart: str) -> list[RoomRule]:
        """Every rule that bans this localpart, in the order the rooms gave them."""
        if not self.rules:
            return []
        found = self._patterns.match_indices(f"@{localpart}:{self.server_name}")
        return [self.rules[i] for i in sorted({o for p in found for o in self._owners[p]})]

    def first_match(self, localpart: str) -> RoomRule | None:
        """The first rule (in the rooms' order) that bans this localpart. The patterns
        are listed in the order of their first rules, so the earliest pattern found
        names it."""
        if not self.rules:
            return None
        pattern = self._patterns.first_index(f"@{localpart}:{self.server_name}")
        return None if pattern is None else self.rules[self._owners[pattern][0]]
