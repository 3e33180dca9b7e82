"""Shared steps of the integration tests: ask for a token, read it from the mail, register."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import sqlite3
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from nio import AsyncClient, AsyncClientConfig, RegisterResponse
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import http
from tests.harness.smtp import Mail, SmtpCatcher
from tests.harness.synapse import SynapseServer

T = TypeVar("T")
TOKEN_LINE = re.compile(r"Registration token:\s+([A-Za-z0-9._~-]+)")


def ask(synapse: SynapseServer, username: str, email: str, **headers: str) -> http.Response:
    return http.post(
        synapse.gate_url + "api/request",
        json={"username": username, "email": email},
        headers=headers or None,
    )


def ask_from(synapse: SynapseServer, username: str, email: str, ip: str) -> http.Response:
    """`ask`, as a client at ``ip`` behind a trusted proxy (X-Forwarded-For)."""
    return ask(synapse, username, email, **{"X-Forwarded-For": ip})


def quiet(mailbox: SmtpCatcher, seconds: float = 1.0, to: str | None = None) -> list[Mail]:
    """The mails (to `to`, if given) that arrive during `seconds` of waiting (expected: none)."""
    before = len(mailbox.messages)
    time.sleep(seconds)
    return [m for m in mailbox.messages[before:] if to is None or m.to == to]


def token_from(mail: Mail) -> str:
    match = TOKEN_LINE.search(mail.text)
    assert match, f"no token in mail:\n{mail.text}"
    return match.group(1)


def request_token(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    username: str,
    email: str,
    ip: str | None = None,
) -> str:
    """Ask for a token (from ``ip`` via X-Forwarded-For, if given) and read it from the mail."""
    answer = ask_from(synapse, username, email, ip) if ip else ask(synapse, username, email)
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


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in its own thread: callers (Playwright's sync API) may own a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def register(synapse: SynapseServer, username: str, token: str) -> Any:
    """Register through matrix-nio's token flow; returns nio's response."""
    return _run(_register(synapse.base_url, username, token))


async def _register_many(base_url: str, usernames: list[str], token: str) -> list[Any]:
    return list(await asyncio.gather(*(_register(base_url, u, token) for u in usernames)))


def register_concurrently(synapse: SynapseServer, usernames: list[str], token: str) -> list[Any]:
    return _run(_register_many(synapse.base_url, usernames, token))


def registered(response: Any) -> bool:
    return isinstance(response, RegisterResponse)


def surge(synapse: SynapseServer, token: str) -> dict[str, Any]:
    """The surge switch's state, as `GET admin/surge` gives it to ``token``."""
    answer = http.get(
        synapse.gate_url + "admin/surge", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, answer
    state: dict[str, Any] = answer.json()
    return state


# --- what happened after the answer ------------------------------------------


def request_outcome(
    synapse: SynapseServer, localpart: str, timeout: float = 10.0
) -> tuple[str, str | None]:
    """(status, reason) of the newest request for ``localpart`` once it has been
    assessed (left `received`): ("issued", None), ("suppressed", "cooldown"), ..."""
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = synapse.query(
            "SELECT status, reason FROM email_gate_requests WHERE localpart = ? "
            "ORDER BY created_ts DESC",
            (localpart,),
        )
        if rows and rows[0][0] != "received":
            return str(rows[0][0]), rows[0][1]
        time.sleep(0.05)
    raise AssertionError(f"request for {localpart!r} not assessed within {timeout}s: {rows}")


def recorded_requests(synapse: SynapseServer, localpart_like: str) -> list[tuple[Any, ...]]:
    """(localpart, status, reason, ip) of every recorded request whose localpart is LIKE
    ``localpart_like``."""
    return synapse.query(
        "SELECT localpart, status, reason, ip FROM email_gate_requests WHERE localpart LIKE ?",
        (localpart_like,),
    )


def token_count(synapse: SynapseServer) -> int:
    """How many registration tokens Synapse holds."""
    return int(synapse.query("SELECT COUNT(*) FROM registration_tokens")[0][0])


def _exact(address: str) -> str:
    """An address as mailed: the local part as typed, the domain lowercased."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def mails_to(mailbox: SmtpCatcher, address: str) -> list[Mail]:
    """The mails whose envelope names exactly ``address`` (local part case-sensitive)."""
    addr = _exact(address)
    return [m for m in list(mailbox.messages) if addr in (_exact(r) for r in m.rcpt_tos)]


def expect_no_mail(
    synapse: SynapseServer,
    mailbox: SmtpCatcher,
    localpart: str,
    address: str,
    reason: str | tuple[str, ...] | None = None,
    settle: float = 0.2,
    mailed_before: int = 0,
) -> None:
    """The request for ``localpart`` was assessed without a token (with ``reason``, or
    one of them, if given), and no mail for it reached ``address`` (which had
    ``mailed_before`` mails from earlier requests in this test)."""
    status, why = request_outcome(synapse, localpart)
    assert status == "suppressed", f"{localpart}: {status} ({why}), expected suppressed"
    if reason is not None:
        reasons = (reason,) if isinstance(reason, str) else reason
        assert why in reasons, f"{localpart}: suppressed for {why!r}, expected {reasons}"
    time.sleep(settle)
    got = mails_to(mailbox, address)
    assert len(got) == mailed_before, f"unexpected mail to {address}: {len(got)} mails"


# --- the page ----------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def form_session(synapse: SynapseServer) -> tuple[str, dict[str, str]]:
    """GET the page: the CSRF field value and the cookies to send back with the form."""
    page = http.get(synapse.gate_url)
    assert page.status == 200, page
    match = CSRF_FIELD.search(page.text)
    assert match, page.text
    return match.group(1), page.cookies


def post_form(
    synapse: SynapseServer,
    username: str,
    email: str,
    session: tuple[str, dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> http.Response:
    """The form post, with the CSRF field and cookie of ``session`` (a fresh one if None)."""
    csrf, cookies = session or form_session(synapse)
    return http.post(
        synapse.gate_url,
        form={"username": username, "email": email, "csrf": csrf},
        cookies=cookies,
        headers=headers,
    )


# Headers that legitimately differ between two answers.
PER_RESPONSE_HEADERS = frozenset({"date"})


def header_set(response: http.Response) -> list[tuple[str, str]]:
    """The answer's headers, names lowercased, sorted, without per-response ones."""
    return sorted(
        (name.lower(), value)
        for name, value in response.headers.items()
        if name.lower() not in PER_RESPONSE_HEADERS
    )


def reload_policy(synapse: SynapseServer, token: str | None) -> http.Response:
    headers = synapse.auth_headers(token) if token else None
    return http.post(synapse.gate_url + "admin/reload", headers=headers)


def confirm_address(synapse: SynapseServer, mail: Mail) -> http.Response:
    """Approval mode: follow the link in the mail and press the button, as a person would."""
    link = re.search(r"(http://\S+/verify\?code=\S+)", mail.text)
    assert link, mail.text
    page = http.get(link.group(1))
    assert page.status == 200
    code = re.search(r'name="code" value="([^"]+)"', page.text)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert code and csrf
    return http.post(
        synapse.gate_url + "verify",
        form={"code": code.group(1), "csrf": csrf.group(1)},
        cookies=page.cookies,
    )


SERVER = "test.local"


def scrape(synapse: SynapseServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels without server_name): value} of our metrics."""
    answer = http.get(f"http://127.0.0.1:{synapse.metrics_port}/_synapse/metrics")
    assert answer.status == 200, answer
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if not sample.name.startswith("synapse_email_gate_"):
                continue
            labels = dict(sample.labels)
            assert labels.pop("server_name") == SERVER, sample
            samples[(sample.name, frozenset(labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def login(synapse: SynapseServer, localpart: str, password: str) -> http.Response:
    """Log in with a password through the client API, as a Matrix client would."""
    return http.post(
        synapse.url("/_matrix/client/v3/login"),
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        },
    )


# --- /register by hand, stage by stage ---------------------------------------------

REGISTER_PATH = "/_matrix/client/v3/register"
TOKEN_STAGE = "m.login.registration_token"
DUMMY_STAGE = "m.login.dummy"


class Registration:
    """One interactive-auth session of `POST /register`, driven a stage at a time, as
    a client that may stop (or wait) between stages."""

    def __init__(
        self,
        base_url: str,
        username: str | None,
        password: str = "correct horse battery",
        **extra: Any,
    ) -> None:
        self.url = base_url + REGISTER_PATH
        body: dict[str, Any] = {"password": password, "inhibit_login": True, **extra}
        if username is not None:
            body["username"] = username
        first = http.post(self.url, json=body)
        assert first.status == 401, first
        self.session: str = first.json()["session"]

    def stage(self, auth: dict[str, Any]) -> http.Response:
        return http.post(self.url, json={"auth": {**auth, "session": self.session}})

    def token_stage(self, token: str) -> http.Response:
        """Completes the token stage (Synapse counts the token pending from now)."""
        answer = self.stage({"type": TOKEN_STAGE, "token": token})
        assert answer.status == 401, answer
        assert TOKEN_STAGE in answer.json().get("completed", []), answer
        return answer

    def finish(self) -> http.Response:
        """The dummy stage: the account is made now, or the answer says why not."""
        return self.stage({"type": DUMMY_STAGE})


def token_valid(base_url: str, token: str) -> bool:
    """Synapse's own answer: GET .../m.login.registration_token/validity."""
    answer = http.get(
        base_url + f"/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"
    )
    assert answer.status == 200, answer
    valid: bool = answer.json()["valid"]
    return valid


def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def race_to_finish(registrations: list[Registration]) -> list[http.Response]:
    """Every session's last stage at the same moment, each from its own thread."""
    start = threading.Barrier(len(registrations))

    def one(registration: Registration) -> http.Response:
        start.wait()
        return registration.finish()

    with concurrent.futures.ThreadPoolExecutor(len(registrations)) as pool:
        return list(pool.map(one, registrations))


def user_exists(synapse: Any, localpart: str) -> bool:
    rows = synapse.query("SELECT COUNT(*) FROM users WHERE name = ?", (f"@{localpart}:{SERVER}",))
    return bool(rows[0][0])


def db_execute(synapse: SynapseServer, sql: str, params: tuple[Any, ...] = ()) -> int:
    """Run one writing statement on the server's database; return the row count."""
    if synapse.postgres is not None:
        assert synapse.db_name is not None
        conn = synapse.postgres.connect(synapse.db_name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                count: int = cur.rowcount
            conn.commit()
            return count
        finally:
            conn.close()
    lite = sqlite3.connect(synapse.config["database"]["args"]["database"], timeout=10)
    try:
        with lite:
            return lite.execute(sql, params).rowcount
    finally:
        lite.close()
