"""Probation's verdicts on a real SQLite database with the module's tables: who is
on probation (gate accounts made since it was switched on, not lifted), the
per-minute message window, lifting, the end, and an in-memory answer for
everyone else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from synapse.api.errors import Codes

from synapse_email_gate.config.probation import ProbationConfig
from synapse_email_gate.moderation.probation import NOT_SPAM, Probation
from synapse_email_gate.storage.accounts import AccountStore
from synapse_email_gate.storage.runner import Runner
from tests.storage.conftest import Txn
from tests.unit.fake_api import NOW, FakeApi

HOUR = 3_600_000
NEWBIE = "@newbie:test.local"


class Event:
    def __init__(self, sender: str, state: bool = False) -> None:
        self.sender = sender
        self._state = state

    def is_state(self) -> bool:
        return self._state


class Api(FakeApi):
    server_name = "test.local"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def account(api: FakeApi, user_id: str, used_ts: int) -> None:
    """An account the gate made (a used token use) at `used_ts`."""
    txn = Txn(api.connection, "sqlite3")
    localpart = user_id[1:].split(":")[0]
    txn.execute(
        "INSERT INTO email_gate_token_uses (localpart, token, state, claimed_ts, lease_until_ts,"
        " user_id, used_ts) VALUES (?, 'tok', 'used', ?, ?, ?, ?)",
        (localpart, used_ts, used_ts, user_id, used_ts),
    )
    txn.commit()


def probation(api: FakeApi, per_minute: int = 2) -> Probation:
    config = ProbationConfig(duration_ms=HOUR, messages_per_minute=per_minute)
    return Probation(api, config, AccountStore(Runner(api)))  # type: ignore[arg-type]


def test_only_accounts_made_since_it_was_switched_on_are_on_probation(tmp_path: Path) -> None:
    api = Api(tmp_path / "gate.db")
    account(api, "@veteran:test.local", NOW - 1000)
    gate = probation(api)
    run(gate.start())  # switched on at NOW
    api.now += 1000
    account(api, NEWBIE, api.now)
    run(gate.refresh())
    assert gate.until(NEWBIE) == api.now + HOUR
    assert gate.until("@veteran:test.local") is None
    assert run(gate.user_may_create_room("@veteran:test.local", {})) == NOT_SPAM
    code, fields = run(gate.user_may_create_room(NEWBIE, {}))
    assert code == Codes.FORBIDDEN and "probation" in fields["error"]
    code, _ = run(gate.user_may_invite(NEWBIE, "@x:test.local", "!r:test.local"))
    assert code == Codes.FORBIDDEN

    api.now += HOUR
    assert gate.until(NEWBIE) is None  # ended, without a refresh
    assert run(gate.user_may_create_room(NEWBIE, {})) == NOT_SPAM


def test_messages_in_a_sliding_minute(tmp_path: Path) -> None:
    api = Api(tmp_path / "gate.db")
    gate = probation(api, per_minute=2)
    run(gate.start())
    gate.noted(NEWBIE)  # made on this process: on probation before any refresh
    assert run(gate.check_event_for_spam(Event(NEWBIE))) == NOT_SPAM
    api.now += 20_000
    assert run(gate.check_event_for_spam(Event(NEWBIE))) == NOT_SPAM
    assert run(gate.check_event_for_spam(Event(NEWBIE, state=True))) == NOT_SPAM
    code, fields = run(gate.check_event_for_spam(Event(NEWBIE)))
    assert code == Codes.LIMIT_EXCEEDED
    assert fields["retry_after_ms"] == 40_000
    api.now += 40_000  # the first message left the window
    assert run(gate.check_event_for_spam(Event(NEWBIE))) == NOT_SPAM
    for _ in range(10):
        assert run(gate.check_event_for_spam(Event("@someone:test.local"))) == NOT_SPAM


def test_a_lift_ends_it_and_is_remembered(tmp_path: Path) -> None:
    api = Api(tmp_path / "gate.db")
    gate = probation(api)
    run(gate.start())
    account(api, NEWBIE, api.now)
    run(gate.refresh())
    assert run(gate.status(NEWBIE, api.now))["active"] is True
    assert run(gate.lift(NEWBIE, "@mod:test.local")) is True
    assert gate.until(NEWBIE) is None
    run(gate.refresh())
    assert gate.until(NEWBIE) is None
    status = run(gate.status(NEWBIE, api.now))
    assert (status["active"], status["lifted_by"]) == (False, "@mod:test.local")
    assert run(gate.lift(NEWBIE, "@mod:test.local")) is False


def test_off_registers_nothing_and_answers_no_probation(tmp_path: Path) -> None:
    api = Api(tmp_path / "gate.db")
    gate = Probation(api, ProbationConfig(), AccountStore(Runner(api)))  # type: ignore[arg-type]
    gate.register()  # nothing to register: FakeApi has no spam-checker hook
    gate.noted(NEWBIE)
    assert gate.until(NEWBIE) is None
    assert run(gate.status(NEWBIE, NOW)) is None
