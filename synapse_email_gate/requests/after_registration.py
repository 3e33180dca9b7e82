"""What happens once an account made with one of our tokens exists (config
`after_registration`): join rooms, and a welcome message; and moderators are
told of the new account (config `notifications`).

It runs for every account that used a token of ours (mailed or invite),
whether it was made on the module's page or in a Matrix client, in the
background of the registration callback (requests/registration.py). Nothing here can
fail a registration: problems are logged, and a room that could not be joined
is reported to the moderators (a notification, storage/notifications.py).

A room of `join_rooms` the account may not join by itself (invite-only) is
joined after the module's bot (`bot_localpart`) invites the account: the bot
must be in that room (invited, it accepts at the first need) with the power
to invite.

The welcome message comes from `after_registration.welcome.sender`, a local
user that must exist: it opens a direct chat with the new account and posts
the message there. ModuleApi has no call to send a server notice, so the
server-notices user can be used only as such a sender (when it exists).
"""

from __future__ import annotations

import logging

from synapse.api.errors import LimitExceededError
from synapse.module_api import ModuleApi, RatelimitOverride

from synapse_email_gate.config.pages import AfterRegistrationConfig
from synapse_email_gate.rules.identifiers import new_id
from synapse_email_gate.rules.notifications import ACCOUNT, JOIN_FAILED, Event
from synapse_email_gate.storage.notifications import NotificationStore
from synapse_email_gate.storage.requests import RequestStore
from synapse_email_gate.storage.tokens import INVITE

logger = logging.getLogger(__name__)

# Synapse's invite rate limiters (rc_invites.per_room, .per_user, .per_issuer): by
# default 10 invites a room or an issuer, then one every few seconds, and 5 per
# invitee. The bot invites each new account once per room; its invites must not
# be refused when sign-ups come in bursts (they are rate-limited themselves).
# The callback is experimental in Synapse (since 1.132): re-check when it moves.
_INVITE_LIMITERS = "rc_invites."
# A membership change Synapse refuses as rate limited is tried this often, waiting
# what it says (at most this long) in between.
_RATE_LIMITED_TRIES = 6
_RATE_LIMITED_WAIT_MS = 30_000
_BOT_INVITES = RatelimitOverride(per_second=1000.0, burst_count=1000)


class JoinFailed(Exception):
    """Why an account could not be put in a room, in words for moderators."""


class AfterRegistration:
    def __init__(
        self,
        api: ModuleApi,
        config: AfterRegistrationConfig,
        default_lang: str,
        requests: RequestStore,
        bot_localpart: str = "email-gate",
        notifications: NotificationStore | None = None,
        notify_accounts: bool = False,
        report_failures: bool = False,
    ) -> None:
        self._api = api
        self._config = config
        self._default_lang = default_lang
        self._requests = requests
        self._bot = f"@{bot_localpart}:{api.server_name}"
        self._notifications = notifications
        self._notify_accounts = notify_accounts and notifications is not None
        self._report_failures = report_failures and notifications is not None

    def register(self) -> None:
        if self._config.join_rooms:
            self._api.register_ratelimit_callbacks(
                get_ratelimit_override_for_user=self._ratelimit_override
            )

    async def _ratelimit_override(self, user_id: str, limiter: str) -> RatelimitOverride | None:
        if user_id == self._bot and limiter.startswith(_INVITE_LIMITERS):
            return _BOT_INVITES
        return None

    @property
    def active(self) -> bool:
        return (
            bool(self._config.join_rooms)
            or self._config.welcome is not None
            or self._notify_accounts
        )

    async def run(self, user_id: str, request_id: str | None, kind: str = "") -> None:
        if self._notify_accounts:
            how = "an invite token" if kind == INVITE else "a mailed token"
            detail = f"made with {how}" + (f" (request {request_id})" if request_id else "")
            await self._tell(ACCOUNT, user_id, detail)
        for room in self._config.join_rooms:
            await self._join(user_id, room)
        if self._config.welcome is not None:
            await self._welcome(user_id, request_id)

    async def _tell(self, kind: str, user_id: str, detail: str) -> None:
        if self._notifications is None:
            return
        now = self._api.get_current_time_msec()
        try:
            await self._notifications.record([Event(new_id(), now, kind, user_id, None, detail)])
        except Exception:
            logger.exception("after registration: could not record a %s notification", kind)

    async def _join(self, user_id: str, room: str) -> None:
        try:
            await self._put_in_room(user_id, room)
            logger.info("after registration: %s joined %s", user_id, room)
        except Exception as e:
            reason = str(e) if isinstance(e, JoinFailed) else f"unexpected error: {_why(e)}"
            logger.warning("after registration: %s could not join %s: %s", user_id, room, reason)
            if self._report_failures:
                await self._tell(JOIN_FAILED, user_id, f"{room}: {reason}")

    async def _put_in_room(self, user_id: str, room: str) -> None:
        room_id = room
        servers: list[str] | None = None
        if room.startswith("#"):
            try:
                room_id, servers = await self._api.lookup_room_alias(room)
            except Exception as e:
                raise JoinFailed(f"the room is unknown ({_why(e)})") from e
        try:
            await self._membership(user_id, user_id, room_id, "join", servers)
            return
        except Exception as e:
            first = _why(e)
        # Not allowed in by itself (an invite-only room, say): the bot invites first.
        try:
            await self._invite(user_id, room_id, servers)
        except JoinFailed as e:
            raise JoinFailed(f"could not join ({first}) and {e}") from e
        try:
            await self._membership(user_id, user_id, room_id, "join", servers)
        except Exception as e:
            raise JoinFailed(f"could not join even when invited ({_why(e)})") from e

    async def _invite(self, user_id: str, room_id: str, servers: list[str] | None) -> None:
        try:
            await self._membership(self._bot, user_id, room_id, "invite", servers)
            return
        except Exception as e:
            refused = _why(e)
        if not await self._bot_joined(room_id):
            # The bot may hold an invite to the room: it accepts it now.
            try:
                await self._membership(self._bot, self._bot, room_id, "join", servers)
            except Exception as e:
                raise JoinFailed(
                    f"the bot {self._bot} is not in the room and could not join it ({_why(e)});"
                    " invite it, with the power to invite"
                ) from e
            logger.info("after registration: the bot joined %s", room_id)
            try:
                await self._membership(self._bot, user_id, room_id, "invite", servers)
                return
            except Exception as e:
                refused = _why(e)
        raise JoinFailed(
            f"the bot {self._bot} could not invite the account ({refused});"
            " give it the power to invite"
        )

    async def _bot_joined(self, room_id: str) -> bool:
        state = await self._api.get_room_state(room_id, [("m.room.member", self._bot)])
        member = state.get(("m.room.member", self._bot))
        return member is not None and member.content.get("membership") == "join"

    async def _membership(
        self,
        sender: str,
        target: str,
        room_id: str,
        membership: str,
        servers: list[str] | None,
    ) -> None:
        # Synapse's join limits (rc_joins, rc_joins_per_room) refuse a burst of
        # sign-ups joining one room: wait as told and try again, a few times.
        for attempt in range(_RATE_LIMITED_TRIES):
            try:
                await self._api.update_room_membership(
                    sender=sender,
                    target=target,
                    room_id=room_id,
                    new_membership=membership,
                    remote_room_hosts=servers,
                )
                return
            except LimitExceededError as e:
                if attempt == _RATE_LIMITED_TRIES - 1:
                    raise
                wait_ms = min(e.retry_after_ms or 1_000, _RATE_LIMITED_WAIT_MS)
                await self._api.sleep(wait_ms / 1000)

    async def _welcome(self, user_id: str, request_id: str | None) -> None:
        welcome = self._config.welcome
        assert welcome is not None
        try:
            lang = None
            if request_id is not None:  # an invite token has no request, nor a language
                lang = await self._requests.language(request_id)
            lang = lang or self._default_lang
            message = welcome.message_in(lang, self._default_lang)
            room_id, _ = await self._api.create_room(
                welcome.sender,
                {"preset": "trusted_private_chat", "is_direct": True, "invite": [user_id]},
                ratelimit=False,
            )
            await self._api.create_and_send_event_into_room(
                {
                    "type": "m.room.message",
                    "room_id": room_id,
                    "sender": welcome.sender,
                    "content": {"msgtype": "m.text", "body": message},
                }
            )
            logger.info("after registration: welcome message to %s in %s", user_id, room_id)
        except Exception as e:
            logger.warning("after registration: no welcome message to %s: %s", user_id, e)


def _why(error: Exception) -> str:
    """A Synapse error's message (its `msg`), or the exception's text."""
    message = getattr(error, "msg", None)
    return message if isinstance(message, str) and message else str(error) or type(error).__name__
