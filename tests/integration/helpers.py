"""Shared steps of the integration tests: ask for a token, read it from the mail, register."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from nio import AsyncClient, AsyncClientConfig, RegisterResponse

from tests.harness import http
from tests.harness.smtp import Mail, SmtpCatcher
from tests.harness.synapse import SynapseServer

TOKEN_LINE = re.compile(r"Registration token:\s+([A-Za-z0-9._~-]+)")


def ask(synapse: SynapseServer, username: str, email: str, **headers: str) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": email},
        headers=headers or None,
    )


def quiet(mailbox: SmtpCatcher, seconds: float = 1.0) -> list[Mail]:
    """The mails that arrive during `seconds` of waiting (expected: none)."""
    before = len(mailbox.messages)
    time.sleep(seconds)
    return list(mailbox.messages[before:])


def token_from(mail: Mail) -> str:
    match = TOKEN_LINE.search(mail.text)
    assert match, f"no token in mail:\n{mail.text}"
    return match.group(1)


def request_token(synapse: SynapseServer, mailbox: SmtpCatcher, username: str, email: str) -> str:
    answer = ask(synapse, username, email)
    assert answer.status == 202, answer
    mail = mailbox.wait_for(lambda m: m.to == email)
    return token_from(mail)


async def _register(base_url: str, username: str, token: str) -> Any:
    # No retries: a refused registration (429) must come back as an answer.
    config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30)
    client = AsyncClient(base_url, config=config)
    try:
        return await client.register_with_token(username, "correct horse battery", token)
    finally:
        await client.close()


def register(synapse: SynapseServer, username: str, token: str) -> Any:
    """Register through matrix-nio's token flow; returns nio's response."""
    return asyncio.run(_register(synapse.base_url, username, token))


async def _register_many(base_url: str, usernames: list[str], token: str) -> list[Any]:
    return list(await asyncio.gather(*(_register(base_url, u, token) for u in usernames)))


def register_concurrently(synapse: SynapseServer, usernames: list[str], token: str) -> list[Any]:
    return asyncio.run(_register_many(synapse.base_url, usernames, token))


def registered(response: Any) -> bool:
    return isinstance(response, RegisterResponse)
