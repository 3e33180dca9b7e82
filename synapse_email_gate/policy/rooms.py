"""Matrix policy lists: the module follows the ban rules of `policy_rooms`.

Every process reads the rules itself, so a rule added, changed or redacted in a
room applies everywhere within one `policy_check_interval`, with no reload:

- each interval one query gives the rooms' status and, per followed room, the
  position of its last event (storage/policy_rooms.py). A room whose position
  moved, or where `on_new_event` saw a rule, a redaction or the bot's
  membership, is read again: its current state, filtered to the rule types and
  the bot's membership, in a background process of its own, so that a room
  slow to read never holds up the others. A room whose position moved is read
  once more at the next interval: a worker may see the new position before its
  event cache has dropped a redacted rule.
- The rules of a room count while the bot is joined to it. They are compiled
  with those of the other rooms (rules/policy_rules.py) and put in force here
  (LivePolicy.set_room_rules); the background-tasks process then revokes the
  open requests and tokens they ban (policy/revocation.py).

Only the background-tasks process changes memberships (workers may not be able
to): while a room is not joined, every `JOIN_RETRY_MS`, it looks an alias up
and joins (public rooms; others answer that the bot is not invited), and it
joins at once when the bot is invited to a followed room. What it found is
written per room for every process to read and show (`admin/policy`), logged
when it changes, and counted in metrics. A room that cannot be joined or read
never holds up start-up: its rules are simply not in force until it can be.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi

from synapse_email_gate import metrics
from synapse_email_gate.policy.live import LivePolicy
from synapse_email_gate.policy.revocation import SYSTEM_ACTOR, Revoker
from synapse_email_gate.rules.policy_rules import RULE_TYPES, RoomRule, RoomRules, parse_rule
from synapse_email_gate.storage.policy_rooms import PolicyRoomStore, RoomStatus

logger = logging.getLogger(__name__)

JOIN_RETRY_MS = 30_000


class PolicyRooms:
    def __init__(
        self,
        api: ModuleApi,
        entries: tuple[str, ...],
        bot: str,
        policy: LivePolicy,
        revoker: Revoker,
        store: PolicyRoomStore,
    ) -> None:
        self._api = api
        self._entries = entries
        self._bot = bot
        self._policy = policy
        self._revoker = revoker
        self._store = store
        self._background = api.should_run_background_tasks()
        self._statuses: dict[str, RoomStatus] = {}  # entry -> as last read
        self._room_ids: dict[str, str] = {}  # entry -> room ID, once known
        self._signs: dict[str, int | None] = {}  # room ID -> its last event's position
        self._dirty: set[str] = set()  # room IDs to read (again) at the next check
        self._reading: set[str] = set()
        self._rules: dict[str, tuple[RoomRule, ...]] = {}  # room ID -> its ban rules
        self._joined: dict[str, bool] = {}  # room ID -> the bot is joined (as read here)
        self._tried: dict[str, int] = {}  # entry -> when a join was last tried
        self._problems: dict[str, str | None] = {}  # entry -> last problem logged
        self._checking = False

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    def status(self) -> list[dict[str, Any]]:
        """Per configured room: where it is, whether the bot is in, what went wrong,
        and how many of its ban rules are in force on this process."""
        view = []
        for entry in self._entries:
            stored = self._statuses.get(entry)
            room_id = self._room_ids.get(entry)
            view.append(
                {
                    "room": entry,
                    "room_id": room_id,
                    "joined": bool(room_id and self._joined.get(room_id)),
                    "problem": stored.problem if stored else "not checked yet",
                    "checked_ts": stored.checked_ts if stored else None,
                    "rules": len(self._rules.get(room_id, ())) if room_id else 0,
                }
            )
        return view

    # --- every process ----------------------------------------------------------

    async def check(self) -> None:
        """Periodic, on every process: read the rooms where something happened."""
        if self._checking:
            return
        self._checking = True
        try:
            if self._background:
                await self._maintain()
            statuses, signs = await self._store.signs(self._entries)
            self._statuses = statuses
            for entry, status in statuses.items():
                if status.room_id is not None:
                    self._room_ids[entry] = status.room_id
            for entry in self._entries:
                if entry.startswith("!"):
                    self._room_ids.setdefault(entry, entry)
            for room_id, sign in signs.items():
                if room_id not in self._signs or sign != self._signs[room_id]:
                    self._signs[room_id] = sign
                    self._dirty.add(room_id)  # read now, and once more next time
                    self._read_soon(room_id, keep_dirty=True)
            for room_id in list(self._dirty):
                self._read_soon(room_id)
            self._count()
        finally:
            self._checking = False

    def _read_soon(self, room_id: str, keep_dirty: bool = False) -> None:
        if room_id in self._reading:
            self._dirty.add(room_id)
            return
        if not keep_dirty:
            self._dirty.discard(room_id)
        self._reading.add(room_id)
        self._api.run_as_background_process("email_gate_policy_room", self._read, room_id)

    async def _read(self, room_id: str) -> None:
        try:
            state = await self._api.get_room_state(
                room_id, [*((t, None) for t in RULE_TYPES), ("m.room.member", self._bot)]
            )
        except Exception:
            logger.exception("policy room %s: could not read its state", room_id)
            metrics.policy_room_failed(self._api.server_name, self._entry_of(room_id))
            self._dirty.add(room_id)
            return
        finally:
            self._reading.discard(room_id)
        member = state.get(("m.room.member", self._bot))
        joined = member is not None and member.content.get("membership") == "join"
        entry = self._entry_of(room_id)
        rules: tuple[RoomRule, ...] = ()
        if joined:
            found = (
                parse_rule(entry, room_id, kind, key, event.content, event.sender, event.event_id)
                for (kind, key), event in sorted(state.items())
                if kind in RULE_TYPES
            )
            rules = tuple(rule for rule in found if rule is not None)
        self._joined[room_id] = joined
        if rules != self._rules.get(room_id, ()):
            self._rules[room_id] = rules
            await self._apply(f"policy room {entry} changed")

    async def _apply(self, cause: str) -> None:
        followed = set(self._room_ids.values())
        compiled = RoomRules.compile(
            (r for room_id, rules in self._rules.items() if room_id in followed for r in rules),
            self._api.server_name,
        )
        self._policy.set_room_rules(compiled)
        logger.info(
            "%s: %d ban rule(s) from policy rooms in force, %d ignored",
            cause,
            len(compiled),
            len(compiled.ignored),
        )
        self._count()
        if self._background:
            await self._revoker.revoke_banned(SYSTEM_ACTOR, cause)

    def _entry_of(self, room_id: str) -> str:
        for entry, known in self._room_ids.items():
            if known == room_id:
                return entry
        return room_id

    def _count(self) -> None:
        for entry in self._entries:
            room_id = self._room_ids.get(entry)
            joined = bool(room_id and self._joined.get(room_id))
            rules = len(self._rules.get(room_id, ())) if room_id and joined else 0
            metrics.policy_room_state(self._api.server_name, entry, joined, rules)

    async def on_new_event(self, event: EventBase, *args: Any) -> None:
        """Synapse awaits this for every event of the server, on every process: a
        set lookup for most, and no waiting for any."""
        bot_member = event.type == "m.room.member" and event.state_key == self._bot
        relevant = event.type == "m.room.redaction" or event.type in RULE_TYPES or bot_member
        if relevant and event.room_id in self._signs:
            self._read_soon(event.room_id)
        if bot_member and self._background and event.membership == "invite":
            self._api.run_as_background_process(
                "email_gate_policy_room_invite", self._invited, event
            )

    # --- the background-tasks process -----------------------------------------------

    async def _invited(self, event: EventBase) -> None:
        entry = await self._followed_entry(event.room_id)
        if entry is None:
            return
        _, _, inviter_server = event.sender.partition(":")
        await self._join(entry, event.room_id, [inviter_server] if inviter_server else [])

    async def _followed_entry(self, room_id: str) -> str | None:
        for entry in self._entries:
            if self._room_ids.get(entry) == room_id or entry == room_id:
                return entry
        for entry in self._entries:
            if entry.startswith("#"):
                found = await self._resolve(entry)
                if found is not None and found[0] == room_id:
                    return entry
        return None

    async def _resolve(self, entry: str) -> tuple[str, list[str]] | None:
        try:
            return await self._api.lookup_room_alias(entry)
        except Exception as e:
            await self._record(entry, None, False, f"alias not found: {_message(e)}")
            return None

    async def _maintain(self) -> None:
        now = self._api.get_current_time_msec()
        for entry in self._entries:
            room_id = self._room_ids.get(entry)
            if room_id is not None and self._joined.get(room_id):
                stored = self._statuses.get(entry)
                if stored is None or not stored.joined or stored.room_id != room_id:
                    await self._record(entry, room_id, True, None)
                continue
            if now - self._tried.get(entry, -JOIN_RETRY_MS) < JOIN_RETRY_MS:
                continue
            self._tried[entry] = now
            hosts: list[str] = []
            if entry.startswith("#"):
                found = await self._resolve(entry)
                if found is None:
                    continue
                room_id, hosts = found
            else:
                room_id = entry
                _, _, server = entry.partition(":")
                hosts = [server] if server else []
            await self._join(entry, room_id, hosts)

    async def _join(self, entry: str, room_id: str, hosts: list[str]) -> None:
        try:
            await self._api.update_room_membership(
                self._bot, self._bot, room_id, "join", remote_room_hosts=hosts or None
            )
        except Exception as e:
            await self._record(entry, room_id, False, f"cannot join: {_message(e)}")
            return
        logger.info("policy room %s: the bot joined %s", entry, room_id)
        self._room_ids[entry] = room_id
        await self._record(entry, room_id, True, None)
        self._dirty.add(room_id)

    async def _record(
        self, entry: str, room_id: str | None, joined: bool, problem: str | None
    ) -> None:
        if problem is not None:
            metrics.policy_room_failed(self._api.server_name, entry)
        if problem != self._problems.get(entry, ""):
            if problem is None:
                logger.info("policy room %s: followed (%s)", entry, room_id)
            else:
                logger.warning(
                    "policy room %s: %s; its rules are not in force (retried every %d s)",
                    entry,
                    problem,
                    JOIN_RETRY_MS // 1000,
                )
        self._problems[entry] = problem
        status = RoomStatus(entry, room_id, joined, problem, self._api.get_current_time_msec())
        self._statuses[entry] = status
        await self._store.write(status)


def _message(error: Exception) -> str:
    text = getattr(error, "msg", None)
    return str(text) if text else type(error).__name__
