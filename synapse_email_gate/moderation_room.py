"""The bot in the moderation room: joins when invited, posts pending requests,
answers `!gate` commands from moderators.

Synapse calls `on_new_event` on every process (where the event was persisted
and again through replication). Commands are therefore handled only on the
instance that runs background tasks, and each event id is claimed in the
database first, so a command is answered exactly once. The bot cannot read
end-to-end encrypted rooms: the moderation room must not be encrypted.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi

from synapse_email_gate import room_commands, store
from synapse_email_gate.admin_service import AdminService
from synapse_email_gate.web.admin import Moderators

logger = logging.getLogger(__name__)


class ModerationRoom:
    def __init__(
        self,
        api: ModuleApi,
        room: str,
        bot_localpart: str,
        service: AdminService,
        moderators: Moderators,
    ) -> None:
        self._api = api
        self._room = room
        self._bot = f"@{bot_localpart}:{api.server_name}"
        self._bot_localpart = bot_localpart
        self._service = service
        self._moderators = moderators
        self._room_id: str | None = room if room.startswith("!") else None

    def register(self) -> None:
        self._api.register_third_party_rules_callbacks(on_new_event=self.on_new_event)

    async def ensure_bot(self) -> None:
        """On the background instance at start-up: the bot user exists."""
        if not self._api.should_run_background_tasks():
            return
        try:
            if await self._api.check_user_exists(self._bot) is None:
                await self._api.register_user(self._bot_localpart, displayname="Registration gate")
                logger.info("moderation bot %s created", self._bot)
        except Exception:
            logger.exception("could not create the moderation bot user %s", self._bot)

    async def _resolve_room(self) -> str | None:
        if self._room_id is None:
            try:
                room_id, _ = await self._api.lookup_room_alias(self._room)
            except Exception:
                return None
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
        if room_id is None or event.room_id != room_id:
            return
        if event.type == "m.room.member" and event.state_key == self._bot:
            if event.membership == "invite":
                await self._claimed(event) and await self._join(room_id)
            return
        if event.type != "m.room.message":
            return
        body = event.content.get("body")
        words = room_commands.parse(body) if isinstance(body, str) else None
        if words is None or not await self._claimed(event):
            return
        if not await self._moderators.may_moderate(event.sender):
            await self.say(f"Sorry {event.sender}, only moderators may use !gate commands.")
            return
        logger.info("moderation room: %s ran %r", event.sender, words[:1])
        await self.say(await room_commands.run(self._service, event.sender, words))

    async def _claimed(self, event: EventBase) -> bool:
        return bool(
            await self._api.run_db_interaction(
                "email_gate_claim_event",
                store.claim_event_txn,
                event.event_id,
                self._api.get_current_time_msec(),
            )
        )

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

    async def announce_pending(self, request_id: str, localpart: str, statement: str) -> None:
        try:
            await self.say(
                room_commands.describe_pending(
                    request_id, localpart, self._api.server_name, statement
                )
            )
        except Exception:
            logger.exception("moderation room: could not announce request %s", request_id)
