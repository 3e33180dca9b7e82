"""What happens once an account made with one of our tokens exists (config
`after_registration`): join rooms, and a welcome message.

It runs for every account that used a token of ours (mailed or invite),
whether it was made on the module's page or in a Matrix client, in the
background of the registration callback (requests/registration.py). Nothing here can
fail a registration: problems are logged.

The welcome message comes from `after_registration.welcome.sender`, a local
user that must exist: it opens a direct chat with the new account and posts
the message there. ModuleApi has no call to send a server notice, so the
server-notices user can be used only as such a sender (when it exists).
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi

from synapse_email_gate.config.pages import AfterRegistrationConfig
from synapse_email_gate.storage.requests import RequestStore

logger = logging.getLogger(__name__)


class AfterRegistration:
    def __init__(
        self,
        api: ModuleApi,
        config: AfterRegistrationConfig,
        default_lang: str,
        requests: RequestStore,
    ) -> None:
        self._api = api
        self._config = config
        self._default_lang = default_lang
        self._requests = requests

    @property
    def active(self) -> bool:
        return bool(self._config.join_rooms) or self._config.welcome is not None

    async def run(self, user_id: str, request_id: str | None) -> None:
        for room in self._config.join_rooms:
            await self._join(user_id, room)
        if self._config.welcome is not None:
            await self._welcome(user_id, request_id)

    async def _join(self, user_id: str, room: str) -> None:
        try:
            room_id = room
            servers: list[str] | None = None
            if room.startswith("#"):
                room_id, servers = await self._api.lookup_room_alias(room)
            await self._api.update_room_membership(
                sender=user_id,
                target=user_id,
                room_id=room_id,
                new_membership="join",
                remote_room_hosts=servers,
            )
            logger.info("after registration: %s joined %s", user_id, room)
        except Exception as e:
            logger.warning("after registration: %s could not join %s: %s", user_id, room, e)

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
