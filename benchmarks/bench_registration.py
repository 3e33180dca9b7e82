"""Registration through the client API: with the module vs without.

Two Synapse processes (SQLite, bcrypt_rounds 4, registration_requires_token),
side by side: one with the module (10,000 patterns; its tokens come from real
requests to the module's API), one without the module (tokens made by an admin
through Synapse's admin API). The timed part is the client's registration
itself, as Element does it: the token's validity check, POST /register (401 with
the flows), POST /register with the m.login.registration_token stage (401),
then with m.login.dummy (200).
With the module that runs its three callbacks (username for the token, spam
check against the patterns, account linking).
"""

from __future__ import annotations

import json
import time

from common import Client, Context, Result, fmt_ms, gate_config, median, say, spread, warm_up

from tests.harness.synapse import SynapseServer

REGISTER = "/_matrix/client/v3/register"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity?token="


def _register(client: Client, username: str, token: str) -> float:
    start = time.perf_counter()
    status, _ = client.request("GET", VALIDITY + token)
    assert status == 200, status
    body = {"username": username, "password": "bench-password-1", "inhibit_login": False}
    status, answer = client.request("POST", REGISTER, body)
    assert status == 401, (status, answer[:200])
    session = json.loads(answer)["session"]
    body["auth"] = {"type": "m.login.registration_token", "token": token, "session": session}
    status, answer = client.request("POST", REGISTER, body)
    if status == 401:  # Synapse adds m.login.dummy after the token stage
        body["auth"] = {"type": "m.login.dummy", "session": session}
        status, answer = client.request("POST", REGISTER, body)
    if status != 200:
        raise RuntimeError(f"registration of {username} failed: {status} {answer[:300]!r}")
    return time.perf_counter() - start


def _module_tokens(server: SynapseServer, count: int) -> list[tuple[str, str]]:
    client = Client(server.port)
    try:
        for i in range(count):
            status, answer = client.request(
                "POST",
                "/_synapse/client/email_gate/api/request",
                {"username": f"regm{i}", "email": f"regm{i}@example.org"},
            )
            assert status == 202, (status, answer)
    finally:
        client.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = server.query(
            "SELECT localpart, token FROM email_gate_requests "
            "WHERE localpart LIKE 'regm%' AND status = 'issued' ORDER BY created_ts"
        )
        if len(rows) >= count:
            return [(str(a), str(b)) for a, b in rows]
        time.sleep(0.1)
    raise RuntimeError("the module did not issue the tokens in time")


def _admin_tokens(server: SynapseServer, count: int) -> list[tuple[str, str]]:
    access = server.register_admin("benchadmin", "bench-admin-password")
    client = Client(server.port)
    tokens = []
    try:
        for i in range(count):
            status, answer = client.request(
                "POST",
                "/_synapse/admin/v1/registration_tokens/new",
                {"uses_allowed": 1},
                {"Authorization": f"Bearer {access}"},
            )
            assert status == 200, (status, answer)
            tokens.append((f"regb{i}", json.loads(answer)["token"]))
    finally:
        client.close()
    return tokens


def run(ctx: Context) -> list[Result]:
    per_run = 10 if ctx.quick else 50
    total = per_run * ctx.runs + 1
    with_module = ctx.server(gate_config(ctx, ctx.smtp))
    without = ctx.server(None)
    runs: dict[str, list[float]] = {"module": [], "plain": []}
    try:
        with_module.start(timeout=120)
        warm_up(with_module)
        without.start(timeout=120)
        tokens = {
            "module": _module_tokens(with_module, total),
            "plain": _admin_tokens(without, total),
        }
        servers = {"module": with_module, "plain": without}
        clients = {label: Client(server.port) for label, server in servers.items()}
        # One registration each first: caches and connections warm on both sides.
        for label in servers:
            name, token = tokens[label].pop()
            _register(clients[label], name, token)
        # Registrations alternate between the servers one by one, so that the
        # machine's moods (disk syncs dominate) fall on both alike.
        for run_no in range(ctx.runs):
            times: dict[str, list[float]] = {"module": [], "plain": []}
            for i in range(per_run):
                order = ["module", "plain"] if (run_no + i) % 2 == 0 else ["plain", "module"]
                for label in order:
                    name, token = tokens[label].pop()
                    times[label].append(_register(clients[label], name, token))
            for label, samples in times.items():
                runs[label].append(median(samples))
        for client in clients.values():
            client.close()
    finally:
        with_module.stop()
        without.stop()
    m, b = median(runs["module"]), median(runs["plain"])
    say(f"    with the module:    {spread(runs['module'])}")
    say(f"    without the module: {spread(runs['plain'])}")
    ratio = m / b
    return [
        Result(
            "registration",
            "registration (client API), module vs none",
            fmt_ms(m),
            fmt_ms(b),
            ratio,
            "≤ 1.10x",
            ratio <= 1.10,
            f"validity check + 3 POST /register, {per_run} per run and server, bcrypt_rounds 4",
            runs,
        )
    ]
