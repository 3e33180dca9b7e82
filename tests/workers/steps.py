"""Steps shared by the worker tests: ask, probe the policy on each process, read logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, RegisterResponse

from tests.harness import http
from tests.harness.smtp import Mail, SmtpCatcher
from tests.harness.workers import WorkerDeployment
from tests.integration.helpers import token_from

USERNAME_BANNED = "EMAIL_GATE_USERNAME_BANNED"
INVALID_EMAIL = "EMAIL_GATE_INVALID_EMAIL"
POLICY_START = ("^startban",)
REQUEST_PATH = "/_synapse/client/email_gate/api/request"
REGISTER_PATH = "/_matrix/client/v3/register"
PROXY = "nginx"

_ips = itertools.count(1)


def client_ip() -> str:
    """A fresh client address in a network of its own (198.18.0.0/15, set aside for
    tests), so neither per-IP nor per-network buckets meet across tests."""
    n = next(_ips)
    return f"198.{18 + n // 256 % 2}.{n % 256}.{1 + n // 512 % 254}"


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


# --- targets: nginx, or one process's own listener ----------------------------


def base_urls(d: WorkerDeployment) -> dict[str, str]:
    """Where a request can be sent: every process directly, and the proxy."""
    urls = {name: p.base_url for name, p in d.processes.items()}
    urls[PROXY] = d.base_url
    return urls


def ask(base_url: str, username: str, email: str, ip: str) -> http.Response:
    """The JSON API, as client ``ip`` (X-Forwarded-For; nginx appends its peer)."""
    return http.post(
        base_url + REQUEST_PATH,
        json={"username": username, "email": email},
        headers={"X-Forwarded-For": ip},
    )


def ask_many(
    base_url: str, asks: list[tuple[str, str, str]], concurrency: int = 10
) -> list[http.Response]:
    """(username, email, ip) each, ``concurrency`` at a time; answers in order."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda a: ask(base_url, *a), asks))


def mail_to(mailbox: SmtpCatcher, address: str, timeout: float = 10.0) -> Mail:
    return mailbox.wait_for_rcpt(address, timeout)


def token_for(d: WorkerDeployment, mailbox: SmtpCatcher, username: str, email: str, ip: str) -> str:
    answer = ask(d.base_url, username, email, ip)
    assert answer.status == 202, answer
    return token_from(mail_to(mailbox, email))


# --- registration through matrix-nio ------------------------------------------


async def _register(base_url: str, username: str, token: str) -> Any:
    config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30)
    client = AsyncClient(base_url, config=config)
    try:
        return await client.register_with_token(username, "correct horse battery", token)
    finally:
        await client.close()


def register(base_url: str, username: str, token: str) -> Any:
    return asyncio.run(_register(base_url, username, token))


def register_concurrently(base_url: str, usernames: list[str], token: str) -> list[Any]:
    async def run() -> list[Any]:
        return list(await asyncio.gather(*(_register(base_url, u, token) for u in usernames)))

    return asyncio.run(run())


def registered(response: Any) -> bool:
    return isinstance(response, RegisterResponse)


# --- the policy ---------------------------------------------------------------


def policy_text(*banned_usernames: str) -> str:
    return "banned_usernames: " + json.dumps(list(banned_usernames)) + "\n"


def write_policy(path: Path, text: str) -> None:
    """As an admin's editor does: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def rewrite_unseen(path: Path, text: str) -> None:
    """Replace the content with ``text`` of the same size, in place, and put the
    mtime back: to a process watching (mtime, size, inode) the file did not change."""
    before = os.stat(path)
    data = text.encode()
    assert len(data) == before.st_size, "the new policy must be as long as the old"
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_ino,
    )


def probe(base_url: str, username: str, ip: str) -> str:
    """The errcode for ``username`` with a malformed address: the username checks come
    first, so it says whether the name is banned without recording a request."""
    answer = ask(base_url, username, "not-an-address", ip)
    assert answer.status == 400, answer
    errcode: str = answer.json()["errcode"]
    return errcode


def wait_everywhere(
    d: WorkerDeployment, username: str, errcode: str, timeout: float = 5.0
) -> dict[str, float]:
    """Probe every process and the proxy until each answers ``errcode`` for
    ``username``; returns the seconds each took. Fails after ``timeout``."""
    ip = client_ip()
    urls = base_urls(d)
    started = time.monotonic()
    took: dict[str, float] = {}
    last: dict[str, str] = {}
    while time.monotonic() - started < timeout:
        for name, url in urls.items():
            if name in took:
                continue
            last[name] = probe(url, username, ip)
            if last[name] == errcode:
                took[name] = time.monotonic() - started
        if len(took) == len(urls):
            return took
        time.sleep(0.05)
    raise AssertionError(
        f"{username!r} not {errcode} everywhere within {timeout}s: took={took} last={last}"
    )


def answers_everywhere(d: WorkerDeployment, username: str) -> dict[str, str]:
    ip = client_ip()
    return {name: probe(url, username, ip) for name, url in base_urls(d).items()}


def reload(base_url: str, token: str) -> http.Response:
    return http.post(
        base_url + "/_synapse/client/email_gate/admin/reload",
        headers={"Authorization": f"Bearer {token}"},
    )


# --- logs ---------------------------------------------------------------------


class LogMark:
    """What each process logged after this point."""

    def __init__(self, d: WorkerDeployment) -> None:
        self._d = d
        self._offsets = {name: len(p.log_text()) for name, p in d.processes.items()}

    def new(self, name: str) -> str:
        return self._d.process(name).log_text()[self._offsets[name] :]

    def lines(self, name: str, *needles: str) -> list[str]:
        """New lines of process ``name`` that contain every one of ``needles``."""
        return [line for line in self.new(name).splitlines() if all(n in line for n in needles)]

    def counts(self, *needles: str) -> dict[str, int]:
        return {name: len(self.lines(name, *needles)) for name in self._d.processes}

    def wait_for(self, name: str, needle: str, timeout: float = 5.0, count: int = 1) -> float:
        """Wait until process ``name`` logged ``count`` new lines with ``needle``;
        returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if len(self.lines(name, needle)) >= count:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{name} did not log {needle!r} {count}x within {timeout}s")


def context_of(line: str) -> str:
    """The log context (Synapse's ``request`` field) of a log line: ``POST-12``,
    ``email_gate_sweep-3``, ..."""
    parts = line.split(" - ")
    return parts[4] if len(parts) > 5 else ""


def statuses(answers: Iterable[http.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return counts
