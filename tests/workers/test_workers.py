"""The module's guarantees on Synapse main + 2 generic workers + PostgreSQL + redis,
behind nginx (see docs/workers.md). One deployment serves every test here.

All tests live in this one module: ``--dist loadscope`` keeps a module on one
xdist worker, so the expensive deployment starts once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.workers import MAIN, WorkerDeployment
from tests.integration.helpers import (
    Registration,
    race_to_finish,
    token_from,
    token_valid,
    wait_until,
)
from tests.workers.conftest import BACKGROUND_ON
from tests.workers.steps import (
    INVALID_EMAIL,
    POLICY_START,
    PROXY,
    REGISTER_PATH,
    REQUEST_PATH,
    USERNAME_BANNED,
    LogMark,
    answers_everywhere,
    ask,
    ask_many,
    client_ip,
    context_of,
    mail_to,
    policy_text,
    probe,
    register,
    register_concurrently,
    registered,
    reload,
    rewrite_unseen,
    statuses,
    token_for,
    unique,
    wait_everywhere,
    write_policy,
)

WORKERS = ("worker1", "worker2")
POLICY_DEADLINE_S = 5.0


def test_all_processes_start_together_on_a_fresh_module_schema(
    deployment: WorkerDeployment,
) -> None:
    """The fixture launched main and both workers at the same moment on a database
    holding Synapse's schema but none of the module's tables: every one of them
    came up and serves the module (a process whose schema creation failed
    answers 503 on the module's paths)."""
    assert deployment.module_tables_before_start == 0
    spread = max(deployment.launched.values()) - min(deployment.launched.values())
    assert spread < 0.5, deployment.launched
    for name, process in deployment.processes.items():
        assert process.running(), name
        # 503 if this process's schema creation had failed
        assert probe(process.base_url, unique("ready"), client_ip()) == INVALID_EMAIL, name
        errors = [
            line
            for line in process.log_text().splitlines()
            if " - ERROR - " in line and "email_gate" in line
        ]
        assert not errors, (name, errors)
    assert deployment.query("SELECT version FROM email_gate_schema_version") == [(2,)]


def test_requests_and_registrations_spread_across_workers(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    """Through nginx: requests land on both workers, each request yields exactly one
    single-use token bound to its username, and registrations work on either."""
    mark = LogMark(deployment)
    users = [unique("spread") for _ in range(6)]
    tokens_before = deployment.query("SELECT COUNT(*) FROM registration_tokens")[0][0]
    answers = [ask(deployment.base_url, u, f"{u}@example.org", client_ip()) for u in users]
    assert statuses(answers) == {202: len(users)}

    tokens = {u: token_from(mail_to(mailbox, f"{u}@example.org")) for u in users}
    assert len(set(tokens.values())) == len(users)
    assert deployment.query("SELECT COUNT(*) FROM registration_tokens")[0][
        0
    ] == tokens_before + len(users)
    for user, token in tokens.items():
        # one use, counted by the module; Synapse's row only lets the token stage through
        rows = deployment.query(
            "SELECT r.localpart, m.uses_allowed, t.uses_allowed FROM email_gate_requests r "
            "JOIN email_gate_tokens m ON m.token = r.token "
            "JOIN registration_tokens t ON t.token = r.token WHERE r.token = ?",
            (token,),
        )
        assert rows == [(user, 1, None)]

    handled = {name: len(mark.lines(name, "received for")) for name in deployment.processes}
    assert handled[MAIN] == 0, handled  # nginx sends the module's paths to the workers
    assert all(handled[w] > 0 for w in WORKERS), handled
    assert sum(handled.values()) == len(users)

    mark = LogMark(deployment)
    for user, token in tokens.items():
        # whatever name the client asks for, the account gets the reserved one
        response = register(deployment.base_url, f"other{user}", token)
        assert registered(response), response
        assert response.user_id == f"@{user}:test.local"
    register_calls = mark.counts(f"POST {REGISTER_PATH}")
    assert all(register_calls[w] > 0 for w in WORKERS), register_calls
    assert register_calls[MAIN] == 0, register_calls
    linked = deployment.query(
        "SELECT COUNT(*) FROM email_gate_requests WHERE status = 'registered' "
        "AND localpart LIKE 'spread%'"
    )
    assert linked == [(len(users),)]
    # used up: a second registration with any of them is refused
    again = register(deployment.base_url, unique("again"), next(iter(tokens.values())))
    assert not registered(again), again


def test_a_token_makes_one_account_when_ten_clients_race_across_workers(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    user = unique("racer")
    token = token_for(deployment, mailbox, user, f"{user}@example.org", client_ip())
    mark = LogMark(deployment)
    names = [f"{user}x{i}" for i in range(10)]
    results = register_concurrently(deployment.base_url, names, token)

    winners = [r for r in results if registered(r)]
    assert len(winners) == 1, results
    assert winners[0].user_id == f"@{user}:test.local"
    register_calls = mark.counts(f"POST {REGISTER_PATH}")
    assert all(register_calls[w] > 0 for w in WORKERS), register_calls
    rows = deployment.query(
        "SELECT completed, uses_allowed FROM registration_tokens WHERE token = ?", (token,)
    )
    assert rows == [(1, None)]
    accounts = deployment.query("SELECT name FROM users WHERE name LIKE ?", (f"@{user}%",))
    assert accounts == [(f"@{user}:test.local",)]
    assert not token_valid(deployment.base_url, token)


def test_invite_tokens_raced_by_ten_clients_across_workers_make_exactly_their_uses(
    deployment: WorkerDeployment, admin_token: str
) -> None:
    """Ten sessions pass Synapse's token stage on either worker, then finish at the
    same moment: the module's claims, in PostgreSQL, let exactly N through."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    for uses in (1, 2, 1, 2):
        created = http.post(
            deployment.gate_url + "admin/tokens", json={"uses_allowed": uses}, headers=headers
        )
        assert created.status == 201, created
        token = created.json()["token"]
        prefix = unique(f"inv{uses}x")
        mark = LogMark(deployment)
        sessions = [Registration(deployment.base_url, f"{prefix}x{i}") for i in range(10)]
        for session in sessions:
            session.token_stage(token)
        answers = race_to_finish(sessions)
        assert statuses(answers).get(200) == uses, [(a.status, a.body[:60]) for a in answers]
        assert {a.json()["errcode"] for a in answers if a.status != 200} <= {
            "EMAIL_GATE_TOKEN_USED",
            "EMAIL_GATE_TOKEN_BUSY",
        }
        register_calls = mark.counts(f"POST {REGISTER_PATH}")
        assert all(register_calls[w] > 0 for w in WORKERS), register_calls
        accounts = deployment.query(
            "SELECT COUNT(*) FROM users WHERE name LIKE ?", (f"@{prefix}%",)
        )
        assert accounts == [(uses,)]
        shown = http.get(deployment.gate_url + f"admin/tokens/{token}", headers=headers).json()
        assert (shown["completed"], shown["state"]) == (uses, "used")
        assert not token_valid(deployment.base_url, token)


def test_a_ban_revokes_a_mailed_token_on_every_process_at_once(
    deployment: WorkerDeployment, mailbox: SmtpCatcher, admin_token: str
) -> None:
    user = unique("wrevoke")
    token = token_for(deployment, mailbox, user, f"{user}@example.org", client_ip())
    added = http.post(
        deployment.process("worker2").gate_url + "admin/bans",
        json={"kind": "username", "match": f"^{user}$"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert added.status == 201 and added.json()["revoked"] == 1, added
    for name, process in deployment.processes.items():
        assert not token_valid(process.base_url, token), name


def test_a_policy_file_ban_is_revoked_by_one_process(
    deployment: WorkerDeployment, mailbox: SmtpCatcher, policy_file: Path
) -> None:
    user = unique("wfile")
    token = token_for(deployment, mailbox, user, f"{user}@example.org", client_ip())
    mark = LogMark(deployment)
    write_policy(policy_file, policy_text(*POLICY_START, f"^{user}$"))
    try:
        wait_until(lambda: not token_valid(deployment.base_url, token), "the token is revoked")
        revoking = {n: c for n, c in mark.counts("revoked 1 open request").items() if c}
        assert revoking == {BACKGROUND_ON: 1}, revoking
    finally:
        write_policy(policy_file, policy_text(*POLICY_START))


def test_a_flood_split_across_workers_gets_the_per_ip_limit_of_one_process(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    """per_ip is {burst: 5}: 20 requests from one client, 10 at a time, round-robined
    over both workers by nginx, get exactly 5 acceptances, like one process does."""
    flooder = client_ip()
    mark = LogMark(deployment)
    flood = [(u, f"{u}@example.org", flooder) for u in (unique("flood") for _ in range(20))]
    answers = ask_many(deployment.base_url, flood)
    assert statuses(answers) == {202: 5, 429: 15}, [a.status for a in answers]
    assert all(a.header("Retry-After") for a in answers if a.status == 429)
    served = mark.counts(f"POST {REQUEST_PATH}")
    assert all(served[w] >= 5 for w in WORKERS), served
    # the module held the client responsible, not nginx
    recorded = deployment.query(
        "SELECT DISTINCT ip FROM email_gate_requests WHERE localpart IN ("
        + ",".join("?" * len(flood))
        + ")",
        tuple(u for u, _, _ in flood),
    )
    assert recorded == [(flooder,)]
    # the bucket is the client's, not the proxy's
    other = unique("bystander")
    assert ask(deployment.base_url, other, f"{other}@example.org", client_ip()).status == 202

    # the same flood on one process alone: the same number gets through
    single = client_ip()
    alone = [(u, f"{u}@example.org", single) for u in (unique("alone") for _ in range(20))]
    answers_alone = ask_many(deployment.process("worker2").base_url, alone)
    assert statuses(answers_alone) == {202: 5, 429: 15}


def test_many_clients_at_once_across_workers_are_all_answered(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    """40 clients, 20 at a time, one request each: every process writes the shared
    `global` bucket row at once. Conflicts are retried; nobody gets a 5xx."""
    crowd = [(u, f"{u}@example.org", client_ip()) for u in (unique("crowd") for _ in range(40))]
    answers = ask_many(deployment.base_url, crowd, concurrency=20)
    assert statuses(answers) == {202: len(crowd)}, [a for a in answers if a.status != 202][:3]


def test_the_email_cooldown_is_shared_by_every_process(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    address = f"{unique('cool')}@example.org"
    first = unique("coolfirst")
    assert ask(deployment.process("worker1").base_url, first, address, client_ip()).status == 202
    mail_to(mailbox, address)
    later = {target: unique("coollater") for target in ("worker2", MAIN, PROXY)}
    for target, user in later.items():
        url = deployment.base_url if target == PROXY else deployment.process(target).base_url
        assert ask(url, user, address, client_ip()).status == 202
    for target, user in later.items():
        assert _assessed(deployment, user) == ("suppressed", "cooldown"), target
    time.sleep(0.5)
    assert len([m for m in mailbox.messages if address in m.rcpt_tos]) == 1


def test_a_policy_file_change_reaches_every_process_within_5s(
    deployment: WorkerDeployment, policy_file: Path
) -> None:
    name = unique("fileban")
    assert set(answers_everywhere(deployment, name).values()) == {INVALID_EMAIL}
    write_policy(policy_file, policy_text(*POLICY_START, "^fileban"))
    took = wait_everywhere(deployment, name, USERNAME_BANNED, POLICY_DEADLINE_S)
    print(f"file change seen after {took}")
    write_policy(policy_file, policy_text(*POLICY_START))
    wait_everywhere(deployment, name, INVALID_EMAIL, POLICY_DEADLINE_S)


def test_the_reload_endpoint_reaches_every_process_within_5s(
    deployment: WorkerDeployment, policy_file: Path, admin_token: str
) -> None:
    """The file is changed so that no process can notice (same size, inode and
    mtime): only the reload asked of one process, through nginx, can spread it."""
    write_policy(policy_file, policy_text(*POLICY_START, "^zzzzzz"))
    wait_everywhere(deployment, unique("zzzzzz"), USERNAME_BANNED, POLICY_DEADLINE_S)
    name = unique("rldban")
    rewrite_unseen(policy_file, policy_text(*POLICY_START, "^rldban"))
    time.sleep(4.2)  # two policy checks (every 2 s by default) that must see nothing
    assert set(answers_everywhere(deployment, name).values()) == {INVALID_EMAIL}

    mark = LogMark(deployment)
    answer = reload(deployment.base_url, admin_token)
    assert answer.status == 200, answer
    took = wait_everywhere(deployment, name, USERNAME_BANNED, POLICY_DEADLINE_S)
    print(f"reload seen after {took}")
    asked = [n for n, c in mark.counts("policy reload requested by").items() if c]
    assert len(asked) == 1 and asked[0] in WORKERS, asked
    for process in deployment.processes:
        assert mark.lines(process, "policy file", "loaded"), process

    write_policy(policy_file, policy_text(*POLICY_START))
    wait_everywhere(deployment, name, INVALID_EMAIL, POLICY_DEADLINE_S)


def test_a_ban_added_through_the_admin_api_reaches_every_process_within_5s(
    deployment: WorkerDeployment, admin_token: str
) -> None:
    name = unique("apiban")
    headers = {"Authorization": f"Bearer {admin_token}"}
    bans_url = deployment.gate_url + "admin/bans"
    added = http.post(bans_url, json={"kind": "username", "match": "^apiban"}, headers=headers)
    assert added.status == 201, added
    took = wait_everywhere(deployment, name, USERNAME_BANNED, POLICY_DEADLINE_S)
    print(f"admin API ban seen after {took}")
    removed = http.request("DELETE", f"{bans_url}/{added.json()['id']}", headers=headers)
    assert removed.status in (200, 204), removed
    wait_everywhere(deployment, name, INVALID_EMAIL, POLICY_DEADLINE_S)


def test_a_bad_policy_is_refused_alike_everywhere_and_the_old_one_stays(
    deployment: WorkerDeployment, policy_file: Path, admin_token: str
) -> None:
    banned = unique("startban")
    wait_everywhere(deployment, banned, USERNAME_BANNED, POLICY_DEADLINE_S)
    mark = LogMark(deployment)
    # would lift the start ban, if it were taken
    write_policy(policy_file, 'banned_usernames: ["(unclosed"]\n')
    for name in deployment.processes:
        mark.wait_for(name, "policy file refused", POLICY_DEADLINE_S)
    assert set(answers_everywhere(deployment, banned).values()) == {USERNAME_BANNED}

    errors = {}
    for name, process in deployment.processes.items():
        answer = reload(process.base_url, admin_token)
        assert answer.status == 400, (name, answer)
        assert answer.json()["errcode"] == "EMAIL_GATE_POLICY_INVALID"
        errors[name] = answer.json()["error"]
    through_proxy = reload(deployment.base_url, admin_token)
    assert through_proxy.status == 400
    errors[PROXY] = through_proxy.json()["error"]
    assert len(set(errors.values())) == 1, errors
    assert "banned_usernames" in errors[MAIN]
    assert set(answers_everywhere(deployment, banned).values()) == {USERNAME_BANNED}

    write_policy(policy_file, policy_text(*POLICY_START))
    for name in deployment.processes:
        mark.wait_for(name, "loaded", POLICY_DEADLINE_S)
    assert set(answers_everywhere(deployment, banned).values()) == {USERNAME_BANNED}


def test_room_commands_are_answered_once_and_their_bans_reach_every_process(
    deployment: WorkerDeployment,
) -> None:
    """The bot lives on the background-tasks instance; every process sees each room
    event (on_new_event fires where it is persisted and again via replication)."""
    mod = deployment.main.register_user("mod", "mod password 1")
    bot = "@email-gate:test.local"
    _wait(lambda: http.get(deployment.url(f"/_matrix/client/v3/profile/{bot}")).status == 200)
    room = _client(
        deployment,
        mod,
        "POST",
        "/createRoom",
        json={
            "room_alias_name": "moderation",
            "preset": "private_chat",
            "invite": [bot],
            # the bot answers only in a room closed to all but moderators
            "creation_content": {"m.federate": False},
            "initial_state": [
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "joined"},
                }
            ],
        },
    )["room_id"]
    _wait(lambda: bot in _client(deployment, mod, "GET", f"/rooms/{room}/joined_members")["joined"])

    mark = LogMark(deployment)
    reply = _ask_bot(deployment, mod, room, "!gate ban username ^roomban from the room")
    assert "Banned username" in reply, reply
    took = wait_everywhere(deployment, unique("roomban"), USERNAME_BANNED, POLICY_DEADLINE_S)
    print(f"room ban seen after {took}")
    ran = mark.counts("moderation room:", "ran")
    assert ran == {name: int(name == BACKGROUND_ON) for name in deployment.processes}, ran
    # the bot's answer did not hold up the worker's replication stream
    stalls = mark.counts("Timed out waiting for repl stream")
    assert not any(stalls.values()), stalls

    ban_id = reply.rsplit("ban id ", 1)[1].rstrip(").")
    assert "removed" in _ask_bot(deployment, mod, room, f"!gate unban {ban_id}")
    wait_everywhere(deployment, unique("roomban"), INVALID_EMAIL, POLICY_DEADLINE_S)


def test_a_policy_room_rule_is_refused_by_every_process_within_seconds(
    deployment: WorkerDeployment,
) -> None:
    """Each process reads the policy room's rules itself (the bot joined it from the
    background-tasks instance); a rule sent on main applies on the workers too."""
    publisher = deployment.main.register_user("publisher", "publisher password 1")
    bot = "@email-gate:test.local"
    _wait(lambda: http.get(deployment.url(f"/_matrix/client/v3/profile/{bot}")).status == 200)
    room = _client(
        deployment,
        publisher,
        "POST",
        "/createRoom",
        json={"room_alias_name": "worker-bans", "preset": "public_chat"},
    )["room_id"]
    members = f"/rooms/{room}/joined_members"
    _wait(lambda: bot in _client(deployment, publisher, "GET", members)["joined"], 45)
    name = unique("roomrule")
    _client(
        deployment,
        publisher,
        "PUT",
        f"/rooms/{room}/state/m.policy.rule.user/rule:{name}",
        json={"entity": f"@{name}*:test.local", "recommendation": "m.ban", "reason": "wave"},
    )
    took = wait_everywhere(deployment, name + "x", USERNAME_BANNED, POLICY_DEADLINE_S)
    print(f"policy room rule seen after {took}")


def test_the_mail_sweep_runs_only_on_the_background_tasks_instance(
    deployment: WorkerDeployment, mailbox: SmtpCatcher
) -> None:
    """A mail is tried at once where it was asked for; when that fails, the sweep
    sends it, and the sweep runs on the instance named by run_background_tasks_on
    and nowhere else."""
    mark = LogMark(deployment)
    mailbox.refuse()
    users = [unique("swept") for _ in range(4)]
    for user in users:
        assert ask(deployment.base_url, user, f"{user}@example.org", client_ip()).status == 202
    failed_once = (
        "SELECT o.id FROM email_gate_outbox o JOIN email_gate_requests r "
        f"ON r.id = o.request_id WHERE r.localpart IN ({','.join('?' * len(users))}) "
        "AND o.status = 'queued' AND o.attempts >= 1 AND o.last_error IS NOT NULL"
    )
    deadline = time.monotonic() + 10
    while len(deployment.query(failed_once, tuple(users))) < len(users):
        assert time.monotonic() < deadline, "the first tries did not fail"
        time.sleep(0.05)
    first_tries = mark.counts("mail not sent")
    assert all(first_tries[w] > 0 for w in WORKERS), first_tries  # where they were asked

    mailbox.accept()  # the retries (after mail_retry_initial) are the sweep's
    for user in users:
        mail_to(mailbox, f"{user}@example.org", timeout=15)
    mark.wait_for(BACKGROUND_ON, "mail sent", count=len(users))  # logged after the send
    sent = {name: mark.lines(name, "mail sent") for name in deployment.processes}
    assert all(context_of(line).startswith("email_gate_sweep-") for line in sent[BACKGROUND_ON]), (
        sent
    )
    assert not any(lines for name, lines in sent.items() if name != BACKGROUND_ON), sent

    # Synapse counts every background process it starts, by name: the sweep was
    # started on that one instance only; the policy check on every process.
    for name in deployment.processes:
        metrics = deployment.metrics(name)
        sweeps = _started(metrics, "email_gate_sweep")
        if deployment.instance_name(name) == BACKGROUND_ON:
            assert sweeps > 0, name
        else:
            assert sweeps == 0, name
        assert _started(metrics, "email_gate_check_policy") > 0, name


# --- helpers ------------------------------------------------------------------

_txn_ids = itertools.count()


def _wait(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _client(
    d: WorkerDeployment, token: str, method: str, path: str, base: str = "", **kw: Any
) -> Any:
    """The client API through nginx (or at ``base``)."""
    answer = http.request(
        method,
        (base or d.base_url) + "/_matrix/client/v3" + path.replace("!", "%21"),
        headers={"Authorization": f"Bearer {token}"},
        **kw,
    )
    assert answer.status == 200, answer
    return answer.json()


def _bot_lines(d: WorkerDeployment, token: str, room: str) -> list[str]:
    # read from main, which persists events: a worker may be a moment behind, and
    # nginx would alternate between them
    path = f"/rooms/{room}/messages?dir=b&limit=100"
    events = _client(d, token, "GET", path, base=d.main.base_url)["chunk"]
    return [
        e["content"].get("body", "")
        for e in reversed(events)
        if e["sender"] == "@email-gate:test.local" and e["type"] == "m.room.message"
    ]


def _ask_bot(d: WorkerDeployment, token: str, room: str, body: str) -> str:
    """Say ``body`` in the room; the bot's one answer (a second one fails the test)."""
    before = len(_bot_lines(d, token, room))
    path = f"/rooms/{room}/send/m.room.message/w{next(_txn_ids)}"
    _client(d, token, "PUT", path, json={"msgtype": "m.text", "body": body})
    _wait(lambda: len(_bot_lines(d, token, room)) > before)
    time.sleep(0.5)  # a second answer would be here by now
    lines = _bot_lines(d, token, room)
    assert len(lines) == before + 1, lines[before:]
    return lines[-1]


def _started(metrics: str, name: str) -> float:
    """How many times Synapse started background process ``name``."""
    prefix = f'synapse_background_process_start_count_total{{name="{name}",'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix)
    )


def _assessed(d: WorkerDeployment, localpart: str, timeout: float = 10.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        rows = d.query(
            "SELECT status, reason FROM email_gate_requests WHERE localpart = ?", (localpart,)
        )
        if rows and rows[0][0] != "received":
            return str(rows[0][0]), str(rows[0][1])
        time.sleep(0.05)
    raise AssertionError(f"{localpart}: not assessed within {timeout}s: {rows}")
