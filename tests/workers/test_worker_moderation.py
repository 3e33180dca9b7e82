"""The moderation features of wave 2 on Synapse main + 2 generic workers + PostgreSQL +
redis (docs/workers.md): notifications, probation and the surge switch.

This module starts its own deployment (the package's shared one counts mails and
bot replies in tests/workers/test_workers.py), with its own mail catcher, and the
background tasks on worker1. Requests and switches go to one process's own
listener, and what they change is checked on each of the others.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from synapse_email_gate.rules.proof_of_work import REQUIRED as CHALLENGE_REQUIRED
from tests.harness import http
from tests.harness.postgres import PostgresCluster
from tests.harness.smtp import Mail, SmtpCatcher
from tests.harness.workers import MAIN, WorkerDeployment
from tests.integration.helpers import token_from
from tests.integration.matrix import MatrixUser, wait_for_bot_line, wait_until
from tests.workers.conftest import run_deployment
from tests.workers.steps import LogMark, ask, client_ip, register, registered, unique

BACKGROUND_ON = "worker1"
MODERATOR = "@mod:test.local"
MODS = "mods@workers.example"
FAST = {"burst": 1000, "per_second": 1000}
PROBATION_REFRESH_S = 1.0
# Slack over an interval for the loop to run and the answer to come back. Generous:
# under the whole suite on 2 cores, three Synapse processes' periodic loops and each
# check's HTTP calls are late by seconds (2 s was seen to fall short). What is tested
# is that the change reaches every process, not how fast.
SLACK_S = 10.0
# policy_check_interval (2 s, the default), which also re-reads the surge row.
SURGE_DEADLINE_S = 2.0 + SLACK_S
SURGE_LEVEL = 8


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpCatcher]:
    """This deployment's own catcher: no mail of the package's deployment lands here."""
    with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def deployment(postgres: PostgresCluster, smtp: SmtpCatcher) -> Iterator[WorkerDeployment]:
    config = {
        "smtp": smtp.config(),
        "sender": "Email Gate <gate@test.local>",
        "trusted_proxies": ["127.0.0.1"],
        "moderators": [MODERATOR],
        "moderation_room": "#moderation:test.local",
        "email_cooldown": 0,
        "mail_sweep_interval": "1s",
        "mail_retry_initial": "1s",
        "rate_limits": {"per_ip": FAST, "per_email": FAST, "global": FAST},
        "notifications": {
            "emails": [MODS],
            "room": True,
            "digest_after": 50,
            "check_interval": "500ms",
        },
        "probation": {"duration": "1h", "refresh_interval": f"{PROBATION_REFRESH_S:g}s"},
        # by hand only: no automatic switch while the tests ask
        "surge": {"mode": "challenge", "challenge_level": SURGE_LEVEL, "hold": "1m"},
    }
    yield from run_deployment(
        WorkerDeployment(postgres, config, background_on=BACKGROUND_ON),
        "worker-moderation-start-failed",
    )


@pytest.fixture(scope="module")
def admin_token(deployment: WorkerDeployment) -> str:
    return deployment.main.register_admin("ops", "ops password 1")


@pytest.fixture(scope="module")
def room(deployment: WorkerDeployment) -> tuple[MatrixUser, str]:
    """@mod (on main) and the moderation room, with the bot (of worker1) in it."""
    main = deployment.main
    mod = MatrixUser(main, "mod")
    room_id = mod.open_moderation_room()
    return mod, room_id


# --- steps ----------------------------------------------------------------------


def started(d: WorkerDeployment, name: str, task: str) -> float:
    """How many times process `name` started Synapse background process `task`."""
    prefix = f'synapse_background_process_start_count_total{{name="{task}",'
    lines = d.metrics(name).splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def surge_gauge(d: WorkerDeployment, name: str) -> float:
    """`synapse_email_gate_surge_on{mode="challenge"}` on process `name` (0 if unset)."""
    for family in text_string_to_metric_families(d.metrics(name)):
        for sample in family.samples:
            if (
                sample.name == "synapse_email_gate_surge_on"
                and sample.labels["mode"] == "challenge"
            ):
                return float(sample.value)
    return 0.0


def saying(text: str) -> Callable[[Mail], bool]:
    return lambda mail: mail.to == MODS and text in mail.text


def notices(mailbox: SmtpCatcher, text: str) -> list[Mail]:
    return [m for m in mailbox.messages if m.to == MODS and text in m.text]


def bot_says(mod: MatrixUser, room_id: str, text: str) -> list[str]:
    return [line for line in mod.bot_lines(room_id) if text in line]


def create_room(base_url: str, access_token: str) -> http.Response:
    return http.post(
        base_url + "/_matrix/client/v3/createRoom",
        json={"preset": "private_chat"},
        headers={"Authorization": f"Bearer {access_token}"},
    )


def client_call(base_url: str, access_token: str, path: str, body: dict[str, Any]) -> http.Response:
    return http.post(
        base_url + "/_matrix/client/v3" + path.replace("!", "%21"),
        json=body,
        headers={"Authorization": f"Bearer {access_token}"},
    )


def errcode(answer: http.Response) -> str | None:
    if answer.status == 200:
        return None
    code: str = answer.json()["errcode"]
    return code


def until_each(
    names: list[str], check: Callable[[str], bool], deadline_s: float, what: str
) -> dict[str, float]:
    """Seconds until `check(name)` held for each of `names`; fails past `deadline_s`."""
    began = time.monotonic()
    took: dict[str, float] = {}
    while len(took) < len(names):
        for name in names:
            if name not in took and check(name):
                took[name] = time.monotonic() - began
        if len(took) < len(names):
            assert time.monotonic() - began < deadline_s, f"{what}: only {took} in {deadline_s}s"
            time.sleep(0.05)
    return took


def admin(
    d: WorkerDeployment, name: str, token: str, method: str, path: str, **kw: Any
) -> http.Response:
    return http.request(
        method,
        d.process(name).gate_url + "admin/" + path,
        headers={"Authorization": f"Bearer {token}"},
        **kw,
    )


# --- notifications --------------------------------------------------------------


def test_a_request_and_its_account_made_on_a_worker_are_notified_once_by_the_background_process(
    deployment: WorkerDeployment, mailbox: SmtpCatcher, room: tuple[MatrixUser, str]
) -> None:
    """Asked and registered on worker2, recorded there; worker1 (run_background_tasks_on)
    mails and posts each, once, and no other process delivers notifications at all."""
    mod, room_id = room
    mark = LogMark(deployment)
    user = unique("notify")
    email = f"{user}@example.org"
    worker2 = deployment.process("worker2").base_url
    assert ask(worker2, user, email, client_ip()).status == 202
    token = token_from(mailbox.wait_for(lambda m: m.to == email, timeout=15))
    assert registered(register(worker2, user, token))
    lines = [f"New request for @{user}:test.local", f"New account @{user}:test.local"]
    for line in lines:
        mailbox.wait_for(saying(line), timeout=20)
        wait_for_bot_line(mod, room_id, re.escape(line))

    # Let the notifier run a few more times: a second delivery would come now.
    ticks = started(deployment, BACKGROUND_ON, "email_gate_notify")
    wait_until(
        lambda: started(deployment, BACKGROUND_ON, "email_gate_notify") >= ticks + 4,
        "four more notifier runs",
    )
    for line in lines:
        assert len(notices(mailbox, line)) == 1, notices(mailbox, line)
        assert len(bot_says(mod, room_id, line)) == 1, mod.bot_lines(room_id)
        # one message per channel in the database, too
        messages = deployment.query(
            "SELECT channel FROM email_gate_notification_messages WHERE body LIKE ?"
            " ORDER BY channel",
            (f"%{line}%",),
        )
        assert messages == [("mail",), ("room",)], (line, messages)
    for name in deployment.processes:
        runs = started(deployment, name, "email_gate_notify")
        if deployment.instance_name(name) == BACKGROUND_ON:
            assert runs > 0, name
        else:
            assert runs == 0, (name, runs)
    sent = mark.counts("notifications: 1 event(s) sent to the")
    assert sent == {MAIN: 0, "worker1": 4, "worker2": 0}, sent


# --- probation ------------------------------------------------------------------


def test_probation_of_an_account_made_on_one_worker_holds_on_every_process_and_lifts_everywhere(
    deployment: WorkerDeployment, mailbox: SmtpCatcher, admin_token: str
) -> None:
    user = unique("newbie")
    email = f"{user}@example.org"
    worker1 = deployment.process("worker1").base_url
    assert ask(worker1, user, email, client_ip()).status == 202
    token = token_from(mailbox.wait_for(lambda m: m.to == email, timeout=15))
    made = register(worker1, user, token)
    assert registered(made), made
    access_token = str(made.access_token)
    user_id = f"@{user}:test.local"

    # Where it registered, refused at once; elsewhere within the refresh interval.
    at_once = create_room(worker1, access_token)
    assert errcode(at_once) == "M_FORBIDDEN", at_once
    took = until_each(
        ["worker2", MAIN],
        lambda name: (
            errcode(create_room(deployment.process(name).base_url, access_token)) == "M_FORBIDDEN"
        ),
        PROBATION_REFRESH_S + SLACK_S,
        "refused room creation",
    )
    print(f"probation in force after {took}")
    worker2 = deployment.process("worker2").base_url
    refused = create_room(worker2, access_token)
    assert "probation" in refused.json()["error"], refused
    # nor invite, on a worker other than the one that made the account
    made_room = create_room(deployment.main.base_url, admin_token)
    assert made_room.status == 200, made_room
    room_id = made_room.json()["room_id"]
    invited = client_call(
        deployment.main.base_url, admin_token, f"/rooms/{room_id}/invite", {"user_id": user_id}
    )
    assert invited.status == 200, invited
    joined = client_call(worker2, access_token, f"/rooms/{room_id}/join", {})
    assert joined.status == 200, joined
    friend = unique("friend")
    deployment.main.register_user(friend, "friend password 1")
    invite_friend = {"user_id": f"@{friend}:test.local"}
    refused = client_call(worker2, access_token, f"/rooms/{room_id}/invite", invite_friend)
    assert errcode(refused) == "M_FORBIDDEN" and "probation" in refused.json()["error"], refused

    lifted = admin(
        deployment,
        "worker2",
        admin_token,
        "POST",
        f"accounts/{user_id}/probation",
        json={"lift": True},
    )
    assert lifted.status == 200 and lifted.json()["probation"]["active"] is False, lifted
    # at once where it was lifted, within the refresh interval elsewhere
    assert errcode(create_room(worker2, access_token)) is None
    invited = client_call(worker2, access_token, f"/rooms/{room_id}/invite", invite_friend)
    assert invited.status == 200, invited
    took = until_each(
        ["worker1", MAIN],
        lambda name: errcode(create_room(deployment.process(name).base_url, access_token)) is None,
        PROBATION_REFRESH_S + SLACK_S,
        "room creation allowed again",
    )
    print(f"probation lifted everywhere after {took}")
    for name in deployment.processes:
        shown = admin(deployment, name, admin_token, "GET", f"accounts/{user_id}")
        assert shown.json()["probation"]["active"] is False, (name, shown)


# --- the surge switch -----------------------------------------------------------


def challenge_demanded(d: WorkerDeployment, name: str) -> bool:
    """GET api/challenge hands one out at the surge's level, and a request without
    one is refused for it."""
    base = d.process(name).base_url
    got = http.get(base + "/_synapse/client/email_gate/api/challenge")
    if got.status != 200 or got.json()["difficulty"] < SURGE_LEVEL:
        return False
    user = unique("surged")
    answer = ask(base, user, f"{user}@example.org", client_ip())
    if answer.status == 202:
        return False
    assert (answer.status, answer.json()["errcode"]) == (400, CHALLENGE_REQUIRED), answer
    return True


def challenge_off(d: WorkerDeployment, name: str) -> bool:
    base = d.process(name).base_url
    if http.get(base + "/_synapse/client/email_gate/api/challenge").status != 404:
        return False
    user = unique("calm")
    answer = ask(base, user, f"{user}@example.org", client_ip())
    if answer.status == 400 and answer.json()["errcode"] == CHALLENGE_REQUIRED:
        return False
    assert answer.status == 202, answer
    return True


def test_a_surge_switched_by_hand_on_one_worker_demands_the_challenge_everywhere(
    deployment: WorkerDeployment,
    mailbox: SmtpCatcher,
    admin_token: str,
    room: tuple[MatrixUser, str],
) -> None:
    mod, room_id = room
    names = list(deployment.processes)
    assert all(challenge_off(deployment, name) for name in names)

    switched = admin(
        deployment,
        "worker2",
        admin_token,
        "POST",
        "surge",
        json={"on": True, "mode": "challenge", "duration": "10m"},
    )
    assert switched.status == 200 and switched.json()["on"] is True, switched
    took = until_each(
        names,
        lambda name: challenge_demanded(deployment, name),
        SURGE_DEADLINE_S,
        "challenge demanded",
    )
    print(f"surge on everywhere after {took}")
    # every process reports the mode it applies (not only the one that switched)
    until_each(names, lambda n: surge_gauge(deployment, n) == 1, SURGE_DEADLINE_S, "gauge on")
    for name in names:
        state = admin(deployment, name, admin_token, "GET", "surge").json()
        assert (state["on"], state["mode"], state["level"]) == (True, "challenge", SURGE_LEVEL)
    # told once: in the room by the process that switched, by mail through the queue
    wait_for_bot_line(mod, room_id, r"Surge switch: ON: challenge at 8 bits")
    mailbox.wait_for(lambda m: m.to == MODS and "Surge switch: ON" in m.text, timeout=20)

    off = admin(deployment, "worker1", admin_token, "POST", "surge", json={"on": False})
    assert off.status == 200 and off.json()["on"] is False, off
    took = until_each(
        names, lambda name: challenge_off(deployment, name), SURGE_DEADLINE_S, "challenge off"
    )
    print(f"surge off everywhere after {took}")
    until_each(names, lambda n: surge_gauge(deployment, n) == 0, SURGE_DEADLINE_S, "gauge off")
    wait_for_bot_line(mod, room_id, r"Surge switch: off")
    mailbox.wait_for(lambda m: m.to == MODS and "Surge switch: off" in m.text, timeout=20)
    assert len(bot_says(mod, room_id, "Surge switch: ON")) == 1, mod.bot_lines(room_id)
    assert len(notices(mailbox, "Surge switch: ON")) == 1


def assessed(d: WorkerDeployment, name: str) -> str:
    """Ask on process `name`; the status its request was assessed to."""
    user = unique("wave")
    answer = ask(d.process(name).base_url, user, f"{user}@example.org", client_ip())
    assert answer.status == 202, answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = d.query("SELECT status FROM email_gate_requests WHERE localpart = ?", (user,))
        if rows and rows[0][0] != "received":
            return str(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"{user} asked on {name}: not assessed within 10s")


def test_a_surge_in_approval_mode_switched_on_main_holds_requests_on_every_process(
    deployment: WorkerDeployment, admin_token: str
) -> None:
    """Approval mode: every process mails a confirmation code (`verifying`) and the
    request waits for a moderator, instead of mailing a token (`issued`)."""
    names = list(deployment.processes)
    assert {name: assessed(deployment, name) for name in names} == dict.fromkeys(names, "issued")
    body = {"on": True, "mode": "approval", "duration": "10m"}
    switched = admin(deployment, MAIN, admin_token, "POST", "surge", json=body)
    assert switched.status == 200 and switched.json()["mode"] == "approval", switched
    until_each(
        names,
        lambda name: assessed(deployment, name) == "verifying",
        SURGE_DEADLINE_S,
        "approval demanded",
    )
    off = admin(deployment, "worker2", admin_token, "POST", "surge", json={"on": False})
    assert off.status == 200 and off.json()["on"] is False, off
    until_each(
        names, lambda name: assessed(deployment, name) == "issued", SURGE_DEADLINE_S, "approval off"
    )
