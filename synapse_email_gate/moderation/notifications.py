"""Delivers the moderators' notifications (config `notifications`, docs/moderation.md).

Events (a request assessed, an account made, an auto-join that failed) are
recorded in the database by whichever process saw them; this runs on the
background-tasks process only and hands each event to each channel once: the
mail channel queues its message in the outbox (retried like every mail), the
room channel posts it through the moderation bot. A message posted in the room
but not yet marked as such when the process dies is posted again after the
restart; a mail is queued in the same transaction that marks its events.
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from synapse_email_gate.config.durations import format_utc
from synapse_email_gate.config.notifications import NotificationsConfig
from synapse_email_gate.mail.delivery import MailDelivery
from synapse_email_gate.moderation.room import ModerationRoom
from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.rules.notifications import JOIN_FAILED, SURGE, Event, compose, plan
from synapse_email_gate.storage.notifications import Channel, NotificationStore

logger = logging.getLogger(__name__)

# Events one tick reads per channel: a digest lists 50 of them and counts the rest.
BATCH = 5000
# Delivered events and messages are looked for this often.
PURGE_EVERY_MS = 3_600_000
# Event kind -> the name `notifications.events` selects it by.
_SELECTED_AS = {"request": "requests", "account": "accounts"}


class Notifier:
    def __init__(
        self,
        api: ModuleApi,
        config: NotificationsConfig,
        store: NotificationStore,
        delivery: MailDelivery,
        room: ModerationRoom | None,
    ) -> None:
        self._api = api
        self._config = config
        self._store = store
        self._delivery = delivery
        self._room = room
        self._purged_ts = 0
        self._failing: dict[Channel, str] = {}

    def _wanted(self, channel: Channel, kind: str) -> bool:
        if channel == "mail":
            available, selected = bool(self._config.emails), True
        else:
            available, selected = self._room is not None, self._config.room
        if kind == JOIN_FAILED:  # always reported where moderators can be reached
            return available
        if kind == SURGE:  # always mailed; the surge switch posts in the room itself
            return available and channel == "mail"
        return available and selected and _SELECTED_AS.get(kind) in self._config.events

    async def deliver(self) -> None:
        for channel in ("mail", "room"):
            try:
                await self._deliver(channel)
                self._failing.pop(channel, None)
            except Exception as e:
                # Retried every tick: logged when the failure starts or changes.
                if self._failing.get(channel) != str(e):
                    self._failing[channel] = str(e)
                    logger.exception("notifications: delivery to the %s channel failed", channel)
        now = self._api.get_current_time_msec()
        if now - self._purged_ts >= PURGE_EVERY_MS:
            await self._store.purge(now)
            self._purged_ts = now

    async def _deliver(self, channel: Channel) -> None:
        pending = await self._store.pending(channel, BATCH)
        unwanted = [e.event_id for e in pending if not self._wanted(channel, e.kind)]
        if unwanted:
            await self._store.skip(channel, unwanted)
        due = [e for e in pending if self._wanted(channel, e.kind)]
        if not due:
            return
        now = self._api.get_current_time_msec()
        interval = self._config.digest_interval_ms
        sent, last = await self._store.window(channel, now - interval)
        how = plan(len(due), sent, last, now, self._config.digest_after, interval)
        if how == "wait":
            return
        groups = [[event] for event in due] if how == "each" else [due]
        for group in groups:
            if not await self._send(channel, group):
                return

    async def _send(self, channel: Channel, events: list[Event]) -> bool:
        message = compose(events, self._api.server_name, channel == "room", format_utc)
        ids = [event.event_id for event in events]
        now = self._api.get_current_time_msec()
        if channel == "mail":
            mails = [(new_id(), address) for address in self._config.emails]
            await self._store.sent(
                channel, new_id(), ids, now, message.subject, message.body, mails
            )
            for outbox_id, _ in mails:
                self._delivery.kick(outbox_id)
        else:
            assert self._room is not None  # _wanted holds no room event without a room
            if not await self._room.post(message.body.rstrip("\n")):
                return False
            await self._store.sent(channel, new_id(), ids, now, message.subject, message.body)
        logger.info("notifications: %d event(s) sent to the %s channel", len(events), channel)
        return True
