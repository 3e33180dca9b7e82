"""Steps the probation and mass-action tests share: gate accounts and a nio client
whose answers (refusals included) come back to the test."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nio import AsyncClient, AsyncClientConfig, ErrorResponse, RoomPreset

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import _run, register, registered, request_token

T = TypeVar("T")
_txn = itertools.count()


class Client:
    """One account acting through matrix-nio; every call returns nio's response."""

    def __init__(self, synapse: SynapseServer, user_id: str, access_token: str) -> None:
        self.synapse = synapse
        self.user_id = user_id
        self.access_token = access_token

    def _call(self, step: Callable[[AsyncClient], Awaitable[T]]) -> T:
        async def run() -> T:
            # No retries: a refusal must come back as the answer.
            config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0)
            client = AsyncClient(self.synapse.base_url, self.user_id, config=config)
            client.access_token = self.access_token
            try:
                return await step(client)
            finally:
                await client.close()

        return _run(run())

    def create_room(self) -> Any:
        return self._call(lambda c: c.room_create(preset=RoomPreset.private_chat))

    def invite(self, room_id: str, user_id: str) -> Any:
        return self._call(lambda c: c.room_invite(room_id, user_id))

    def join(self, room_id: str) -> Any:
        return self._call(lambda c: c.join(room_id))

    def send(self, room_id: str, body: str) -> Any:
        content = {"msgtype": "m.text", "body": body}
        return self._call(
            lambda c: c.room_send(room_id, "m.room.message", content, tx_id=f"p{next(_txn)}")
        )

    def whoami(self) -> http.Response:
        return http.get(
            self.synapse.url("/_matrix/client/v3/account/whoami"),
            headers=self.synapse.auth_headers(self.access_token),
        )


def errcode(response: Any) -> str | None:
    """The errcode of a refusal, None for a success."""
    if isinstance(response, ErrorResponse):
        return str(response.status_code)
    return None


def gate_account(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    localpart: str,
    email: str,
    ip: str | None = None,
) -> Client:
    """An account made through the gate: token by mail, registered with nio."""
    token = request_token(synapse, mailbox, localpart, email, ip)
    made = register(synapse, localpart, token)
    assert registered(made), made
    return Client(synapse, str(made.user_id), str(made.access_token))


def ordinary_account(synapse: SynapseServer, localpart: str) -> Client:
    """An account the gate did not make (Synapse's shared-secret registration)."""
    token = synapse.register_user(localpart, f"{localpart}-password-1")
    return Client(synapse, synapse.user_id(localpart), token)


def admin_call(
    synapse: SynapseServer, access_token: str, method: str, path: str, **kw: Any
) -> http.Response:
    return http.request(
        method, synapse.gate_url + "admin/" + path, headers=synapse.auth_headers(access_token), **kw
    )
