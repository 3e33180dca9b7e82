"""Matrix users for room tests: each call goes through matrix-nio, as a client would."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinedMembersResponse,
    MessageDirection,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
)

from tests.harness import http
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import _run

T = TypeVar("T")
BOT = "@email-gate:test.local"
_txn = itertools.count()


def wait_until(check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ok(response: T) -> T:
    assert not isinstance(response, ErrorResponse), response
    return response


class MatrixUser:
    """A registered user of `synapse`, acting through matrix-nio."""

    def __init__(self, synapse: SynapseServer, localpart: str, admin: bool = False) -> None:
        self.synapse = synapse
        self.user_id = synapse.user_id(localpart)
        self.bot = synapse.user_id("email-gate")  # the moderation bot of this server
        self.access_token = synapse.register_user(localpart, f"{localpart}-password-1", admin)

    def _call(self, step: Callable[[AsyncClient], Awaitable[T]]) -> T:
        async def run() -> T:
            client = AsyncClient(self.synapse.base_url, self.user_id)
            client.access_token = self.access_token
            try:
                return await step(client)
            finally:
                await client.close()

        return _run(run())

    def create_room(
        self,
        alias: str | None = None,
        federate: bool = False,
        history: str = "joined",
        join_rule: str | None = None,
        invite: tuple[str, ...] = (),
    ) -> str:
        state: list[dict[str, Any]] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": history},
            }
        ]
        if join_rule is not None:
            state.append(
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}}
            )
        created = self._call(
            lambda c: c.room_create(
                alias=alias,
                federate=federate,
                preset=RoomPreset.private_chat,
                invite=invite,
                initial_state=state,
            )
        )
        assert isinstance(created, RoomCreateResponse), created
        return str(created.room_id)

    def open_moderation_room(self, alias: str = "moderation") -> str:
        """Create the moderation room `#alias` with the bot invited, once the bot user
        exists, and wait until the bot has joined it."""
        profile = self.synapse.url(f"/_matrix/client/v3/profile/{self.bot}")
        wait_until(lambda: http.get(profile).status == 200, "the bot user")
        room_id = self.create_room(alias=alias, invite=(self.bot,))
        wait_until(lambda: self.bot in self.joined(room_id), "the bot to join")
        return room_id

    def say(self, room_id: str, body: str) -> str:
        content = {"msgtype": "m.text", "body": body}
        sent = self._call(
            lambda c: c.room_send(room_id, "m.room.message", content, tx_id=f"t{next(_txn)}")
        )
        assert isinstance(sent, RoomSendResponse), sent
        return str(sent.event_id)

    def invite(self, room_id: str, user_id: str) -> None:
        ok(self._call(lambda c: c.room_invite(room_id, user_id)))

    def join(self, room_id: str) -> None:
        ok(self._call(lambda c: c.join(room_id)))

    def kick(self, room_id: str, user_id: str) -> None:
        ok(self._call(lambda c: c.room_kick(room_id, user_id)))

    def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        sent = ok(self._call(lambda c: c.room_put_state(room_id, event_type, content, state_key)))
        return str(getattr(sent, "event_id", ""))

    def redact(self, room_id: str, event_id: str) -> None:
        ok(self._call(lambda c: c.room_redact(room_id, event_id, tx_id=f"r{next(_txn)}")))

    def move_alias(self, alias: str, room_id: str) -> None:
        ok(self._call(lambda c: c.room_delete_alias(alias)))
        ok(self._call(lambda c: c.room_put_alias(alias, room_id)))

    def joined(self, room_id: str) -> list[str]:
        members = self._call(lambda c: c.joined_members(room_id))
        assert isinstance(members, JoinedMembersResponse), members
        return [m.user_id for m in members.members]

    def bot_lines(self, room_id: str, bot: str | None = None) -> list[str]:
        """The messages of `bot` (this server's bot) this user can read in the room,
        oldest first."""
        sender = bot or self.bot
        answer = self._call(
            lambda c: c.room_messages(room_id, direction=MessageDirection.back, limit=200)
        )
        assert isinstance(answer, RoomMessagesResponse), answer
        return [
            str(getattr(e, "body", ""))
            for e in reversed(answer.chunk)
            if e.sender == sender and getattr(e, "body", None) is not None
        ]

    def ask_bot(self, room_id: str, body: str) -> str:
        """Say `body`; the bot's one answer (a second answer fails the test)."""
        before = len(self.bot_lines(room_id))
        self.say(room_id, body)
        lines = wait_until(lambda: self.bot_lines(room_id)[before:], f"the answer to {body!r}")
        assert len(lines) == 1, f"more than one answer to {body!r}: {lines}"
        return lines[0]


def wait_for_bot_line(
    user: MatrixUser, room_id: str, pattern: str, after: int = 0, timeout: float = 15.0
) -> str:
    """The first bot message (from index `after`) that contains a match of `pattern`."""
    regex = re.compile(pattern)

    def found() -> str | None:
        return next((ln for ln in user.bot_lines(room_id)[after:] if regex.search(ln)), None)

    line: str = wait_until(found, f"a bot message matching {pattern!r}", timeout)
    return line
