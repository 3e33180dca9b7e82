"""The bot in the moderation room: joins when invited, posts pending requests,
answers commands (`!gate …`, or the configured `command_prefix`) from moderators,
and `help` from anyone in the room.

Synapse calls `on_new_event` on every process (where the event was persisted
and again through replication). Commands are therefore handled only on the
instance that runs background tasks, and each event id is claimed in the
database first, so a command is answered exactly once. The bot cannot read
end-to-end encrypted rooms: the moderation room must not be encrypted.

Before it answers a command or posts a request, the bot reads the room's
current state and says nothing of substance unless the room is closed to all
but moderators (rules/rooms.py). It re-reads the state on every command and
whenever a state event arrives, and says so when the verdict changes.
Commands from users of other servers are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi

from synapse_email_gate.moderation import room_commands
from synapse_email_gate.moderation.accounts import AccountService
from synapse_email_gate.moderation.moderators import Moderators
from synapse_email_gate.moderation.service import ModerationService
from synapse_email_gate.moderation.stats import GateStats
from synapse_email_gate.moderation.surge import SurgeService
from synapse_email_gate.rules.moderator_entries import is_local_user
from synapse_email_gate.rules.rooms import RoomFacts, refusal, room_problems
from synapse_email_gate.storage.requests import PendingRequest
from synapse_email_gate.storage.state import StateStore

logger = logging.getLogger(__name__)


class ModerationRoom:
    def __init__(
        self,
        api: ModuleApi,
        room: str,
        bot_localpart: str,
        service: ModerationService,
        moderators: Moderators,
        state: StateStore,
        prefix: str = room_commands.PREFIX,
        accounts: AccountService | None = None,
        surge: SurgeService | None = None,
        stats: GateStats | None = None,
    ) -> None:
        self._api = api
        self._room = room
        self._bot = f"@{bot_localpart}:{api.server_name}"
        self._commands = room_commands.RoomCommands(
            service, prefix, accounts=accounts, surge=surge, stats=stats
        )
        self._moderators = moderators
        self._state = state
        self._room_id: str | None = room if room.startswith("!") else None
        # The last verdict on the room, to say so when it changes (None: not known yet).
        self._problems: list[str] | None = None
        # Why notifications were last held back ([]: they were not).
        self._held_back: list[str] = []

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    async def _resolve_room(self, fresh: bool = False) -> str | None:
        """The room's ID; `fresh` looks the alias up again (it may have moved)."""
        if self._room_id is None or (fresh and self._room.startswith("#")):
            try:
                room_id, _ = await self._api.lookup_room_alias(self._room)
            except Exception:
                return self._room_id
            if room_id != self._room_id:
                self._problems = None
            self._room_id = room_id
        return self._room_id

    async def on_new_event(self, event: EventBase, *args: Any) -> None:
        if not self._api.should_run_background_tasks() or event.sender == self._bot:
            return
        # Synapse awaits this callback inline; on a worker, in the middle of
        # processing the replication stream. Answering sends an event and waits
        # for it to come back through that very stream, so awaiting here stalled
        # the worker's replication until Synapse gave up waiting (5 s a command).
        # Hand the work off and return at once.
        self._api.run_as_background_process("email_gate_room_event", self._handle, event)

    async def _handle(self, event: EventBase) -> None:
        try:
            await self._on_new_event(event)
        except Exception:
            logger.exception("moderation room: could not handle event %s", event.event_id)

    async def _on_new_event(self, event: EventBase) -> None:
        room_id = await self._resolve_room()
        if room_id is not None and event.room_id != room_id and self._may_have_moved(event):
            # A room found unfit cannot always be fixed (m.federate is for ever):
            # moderators move the alias to a new room, and the bot follows it.
            room_id = await self._resolve_room(fresh=True)
        if room_id is None or event.room_id != room_id:
            return
        if event.type == "m.room.member" and event.state_key == self._bot:
            if event.membership == "invite" and await self._claimed(event):
                await self._join(room_id)
                await self._state_changed(room_id)
            return
        if event.is_state():
            if event.type in _SAFETY_STATE and await self._claimed(event):
                await self._state_changed(room_id)
            return
        if event.type != "m.room.message":
            return
        body = event.content.get("body")
        words = self._commands.parse(body) if isinstance(body, str) else None
        if words is None:
            return
        if not is_local_user(event.sender, self._api.server_name):
            logger.info("moderation room: ignored a command from %s (another server)", event.sender)
            return
        if not await self._claimed(event):
            return
        if room_commands.is_help(words):
            # The list of commands holds nothing secret: anyone in the room may ask.
            await self.say(self._commands.help)
            return
        if not await self._moderators.may_moderate(event.sender):
            prefix = self._commands.prefix
            await self.say(f"Sorry {event.sender}, only moderators may use {prefix} commands.")
            return
        problems = await self.problems(room_id)
        self._problems = problems
        if problems:
            logger.warning("moderation room: refused %s's command: %s", event.sender, problems)
            await self.say(refusal(problems))
            return
        logger.info("moderation room: %s ran %r", event.sender, words[:1])
        await self.say(await self._commands.run(event.sender, words))

    def _may_have_moved(self, event: EventBase) -> bool:
        """Events elsewhere worth looking the alias up again for (rare and cheap
        to tell; looking it up for every event of the server is not)."""
        if event.type == "m.room.member":
            return event.state_key == self._bot and event.membership == "invite"
        body = event.content.get("body") if event.type == "m.room.message" else None
        return isinstance(body, str) and self._commands.parse(body) is not None

    async def problems(self, room_id: str) -> list[str]:
        """Why the bot must not answer in the room now ([] when it may)."""
        problems, _ = await self._read_room(room_id)
        return problems

    async def _read_room(self, room_id: str) -> tuple[list[str], bool]:
        """(why the bot must not answer, whether the bot has joined the room)."""
        state = await self._api.get_room_state(
            room_id,
            [
                ("m.room.create", ""),
                ("m.room.join_rules", ""),
                ("m.room.history_visibility", ""),
                ("m.room.member", None),
            ],
        )
        create = state.get(("m.room.create", ""))
        join_rules = state.get(("m.room.join_rules", ""))
        history = state.get(("m.room.history_visibility", ""))
        members = [
            key
            for (kind, key), event in state.items()
            if kind == "m.room.member"
            and key != self._bot
            and event.content.get("membership") in ("join", "invite")
        ]
        problems = room_problems(
            RoomFacts(
                join_rule=_text(join_rules, "join_rule"),
                # Absent means true: an unknown create event counts as federated.
                federate=create is None or create.content.get("m.federate", True) is not False,
                history_visibility=_text(history, "history_visibility"),
                outsiders=tuple(await self._moderators.not_moderating(members)),
            )
        )
        bot = state.get(("m.room.member", self._bot))
        return problems, bot is not None and bot.content.get("membership") == "join"

    async def _state_changed(self, room_id: str) -> None:
        """A state event arrived: say so when the bot starts or stops answering."""
        problems, joined = await self._read_room(room_id)
        if not joined:  # the room is being set up; the bot speaks once it joins
            return
        before, self._problems = self._problems, problems
        if problems == before:
            return
        if problems:
            logger.warning("moderation room: not answering: %s", problems)
            await self.say(refusal(problems))
        elif before is not None:
            await self.say("This room is closed to all but moderators again: I answer commands.")

    async def _claimed(self, event: EventBase) -> bool:
        return await self._state.claim_event(event.event_id, self._api.get_current_time_msec())

    async def _join(self, room_id: str) -> bool:
        await self._api.update_room_membership(self._bot, self._bot, room_id, "join")
        logger.info("moderation bot joined %s", room_id)
        return True

    async def say(self, text: str) -> None:
        room_id = await self._resolve_room()
        if room_id is None:
            logger.warning("moderation room %s not found; message not posted", self._room)
            return
        await self._api.create_and_send_event_into_room(
            {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": self._bot,
                "content": {"msgtype": "m.notice", "body": text},
            }
        )

    async def announce(self, text: str) -> None:
        """Post `text` to the moderation room, if it is safe to talk there (logged if not)."""
        try:
            room_id = await self._resolve_room()
            problems = [] if room_id is None else await self.problems(room_id)
            if problems:
                logger.warning("moderation room: message not posted: %s", problems)
                return
            await self.say(text)
        except Exception:
            logger.exception("moderation room: could not post a message")

    async def post(self, text: str) -> bool:
        """Post a notification; False (nothing posted) while the room is not found or
        not closed to all but moderators. Failing to send raises."""
        room_id = await self._resolve_room()
        if room_id is None:
            return False
        problems = await self.problems(room_id)
        if problems != self._held_back:  # said once per change, not at every try
            self._held_back = problems
            if problems:
                logger.warning("moderation room: notifications held back: %s", problems)
        if problems:
            return False
        await self.say(text)
        return True

    async def announce_pending(self, pending: PendingRequest) -> None:
        request_id = pending.request_id
        try:
            room_id = await self._resolve_room()
            problems = [] if room_id is None else await self.problems(room_id)
            if problems:
                logger.warning(
                    "moderation room: request %s not announced: %s", request_id, problems
                )
                return
            await self.say(
                room_commands.describe_pending(
                    request_id,
                    pending.localpart,
                    self._api.server_name,
                    pending.statement,
                    self._commands.prefix,
                )
            )
        except Exception:
            logger.exception("moderation room: could not announce request %s", request_id)


# State that settles whether the bot may answer (rules/rooms.py).
_SAFETY_STATE = frozenset(
    {"m.room.create", "m.room.join_rules", "m.room.history_visibility", "m.room.member"}
)


def _text(event: EventBase | None, key: str) -> str | None:
    value = None if event is None else event.content.get(key)
    return value if isinstance(value, str) else None
