"""ChallengeGate (requests/challenge_gate.py) on a real SQLite database without
Synapse: used once, refusals without a database write, the shared key, the
difficulty in force."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from synapse_email_gate.config.gate import ChallengeConfig
from synapse_email_gate.requests.challenge_gate import ChallengeGate
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.rules import proof_of_work
from synapse_email_gate.storage import requests, state
from synapse_email_gate.storage.runner import Runner
from synapse_email_gate.storage.state import StateStore
from tests.storage.conftest import Txn
from tests.unit.fake_api import NOW, FakeApi
from tests.unit.rules.test_proof_of_work import BITS, LIFETIME, WINDOW, _tamper, unsolving_nonce


def gate(
    tmp_path: Path, api: FakeApi | None = None, **config: Any
) -> tuple[ChallengeGate, FakeApi]:
    api = api or FakeApi(tmp_path / "gate.db")
    settings: dict[str, Any] = {"enabled": True, "difficulty": BITS, **config}
    store = StateStore(Runner(api))  # type: ignore[arg-type]
    return ChallengeGate(api, ChallengeConfig(**settings), store), api  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def refusal_code(refusal: Refusal | None) -> str | None:
    return None if refusal is None else refusal.errcode


def test_gate_accepts_a_solution_once_and_refuses_the_replay(tmp_path: Path) -> None:
    g, api = gate(tmp_path)
    i = run(g.issue())
    nonce = proof_of_work.solve(i.challenge, i.difficulty)
    assert run(g.check(i.challenge, nonce)) is None
    assert refusal_code(run(g.check(i.challenge, nonce))) == proof_of_work.REPLAYED
    # Another process (no memory of it) is refused by the table.
    other, _ = gate(tmp_path, api)
    assert refusal_code(run(other.check(i.challenge, nonce))) == proof_of_work.REPLAYED
    used = api.connection.execute("SELECT id, used_ts, expires_ts FROM email_gate_used_challenges")
    assert used.fetchall() == [(i.id, NOW, NOW + ChallengeConfig().lifetime_ms)]


def test_gate_refusals_cost_no_database_write(tmp_path: Path) -> None:
    g, api = gate(tmp_path)
    i = run(g.issue())
    nonce = proof_of_work.solve(i.challenge, i.difficulty)
    before = list(api.transactions)
    assert refusal_code(run(g.check(None, None))) == proof_of_work.REQUIRED
    assert refusal_code(run(g.check("", nonce))) == proof_of_work.REQUIRED
    assert refusal_code(run(g.check(i.challenge, ""))) == proof_of_work.REQUIRED
    assert refusal_code(run(g.check(i.challenge, 5))) == proof_of_work.INVALID
    assert refusal_code(run(g.check(["x"], nonce))) == proof_of_work.INVALID
    assert refusal_code(run(g.check(_tamper(i.challenge, 3, "1"), nonce))) == proof_of_work.INVALID
    assert refusal_code(run(g.check(i.challenge, unsolving_nonce(i.challenge, BITS)))) == (
        proof_of_work.INVALID
    )
    api.now += ChallengeConfig().lifetime_ms
    assert refusal_code(run(g.check(i.challenge, nonce))) == proof_of_work.EXPIRED
    assert api.transactions == before
    refusal = run(g.check(None, None))
    assert refusal.status == 400 and refusal.field is None


def test_gate_shares_one_stored_secret_between_processes(tmp_path: Path) -> None:
    first, api = gate(tmp_path)
    second, _ = gate(tmp_path, api)
    i = run(first.issue())
    assert run(second.check(i.challenge, proof_of_work.solve(i.challenge, i.difficulty))) is None
    assert run(first.key()) == run(second.key())
    rows = api.connection.execute("SELECT name FROM email_gate_secrets").fetchall()
    assert rows == [("challenge_key",)]


def test_gate_uses_the_configured_secret_without_the_database(tmp_path: Path) -> None:
    g, api = gate(tmp_path, secret="configured secret, long enough")
    run(g.issue())
    assert "email_gate_challenge_key" not in api.transactions
    assert run(g.key()) == proof_of_work.derive_key("configured secret, long enough")


def test_gate_off_asks_for_nothing(tmp_path: Path) -> None:
    g, api = gate(tmp_path, enabled=False)
    assert not g.enabled
    assert run(g.check(None, None)) is None
    assert api.transactions == []


def test_gate_refuses_challenges_easier_than_the_configured_difficulty(tmp_path: Path) -> None:
    g, _ = gate(tmp_path, difficulty=6)
    easy = proof_of_work.issue(run(g.key()), NOW, LIFETIME, 5).challenge
    refusal = run(g.check(easy, proof_of_work.solve(easy, 5)))
    assert refusal_code(refusal) == proof_of_work.TOO_EASY


def test_gate_refuses_a_stockpile_of_base_challenges_once_the_level_has_risen(
    tmp_path: Path,
) -> None:
    """Challenges fetched in a calm spell and used in a flood, without fetching new
    ones: the gate follows the solved rate on its own and refuses them two steps up."""
    g, api = gate(tmp_path, max_increase=3, busy_threshold=3, busy_window_ms=WINDOW)
    stock = [run(g.issue()) for _ in range(30)]
    assert {i.difficulty for i in stock} == {BITS}
    solutions = [(i.challenge, proof_of_work.solve(i.challenge, BITS)) for i in stock]

    def use(n: int) -> list[str | None]:
        return [refusal_code(run(g.check(*solutions.pop()))) for _ in range(n)]

    assert use(5) == [None] * 5  # a busy window at the base level
    api.now += WINDOW
    assert use(5) == [None] * 5  # one step up: still within the grace step
    assert g.difficulty == BITS + 1
    api.now += WINDOW
    transactions = len(api.transactions)
    refused = run(g.check(*solutions.pop()))
    assert g.difficulty == BITS + 2
    assert refusal_code(refused) == proof_of_work.TOO_EASY
    assert refused is not None and "harder now" in refused.message
    assert api.transactions[transactions:] == ["email_gate_challenge_rate"]  # not used up
    assert use(3) == [proof_of_work.TOO_EASY] * 3
    # A challenge of the level in force, or one step below it, passes.
    current = run(g.issue())
    assert current.difficulty == BITS + 2
    assert run(g.check(current.challenge, proof_of_work.solve(current.challenge, BITS + 2))) is None
    key = run(g.key())
    below = proof_of_work.issue(key, api.now, LIFETIME, BITS + 1).challenge
    assert run(g.check(below, proof_of_work.solve(below, BITS + 1))) is None


def test_gate_difficulty_follows_the_solved_rate(tmp_path: Path) -> None:
    g, api = gate(tmp_path, max_increase=2, busy_threshold=3, busy_window_ms=WINDOW)

    def solve_some(n: int) -> None:
        for _ in range(n):
            i = run(g.issue())
            assert run(g.check(i.challenge, proof_of_work.solve(i.challenge, i.difficulty))) is None

    assert run(g.issue()).difficulty == BITS
    solve_some(4)
    api.now += WINDOW
    assert run(g.issue()).difficulty == BITS + 1
    solve_some(4)
    api.now += WINDOW
    assert run(g.issue()).difficulty == BITS + 2
    solve_some(4)
    api.now += WINDOW
    assert run(g.issue()).difficulty == BITS + 2  # the maximum
    api.now += WINDOW  # a calm window
    assert run(g.issue()).difficulty == BITS + 1
    api.now += 5 * WINDOW
    assert run(g.issue()).difficulty == BITS
    assert g.difficulty == BITS


def test_purge_forgets_expired_used_challenges(tmp_path: Path) -> None:
    g, api = gate(tmp_path)
    i = run(g.issue())
    assert run(g.check(i.challenge, proof_of_work.solve(i.challenge, i.difficulty))) is None
    txn = Txn(api.connection, "sqlite3")
    requests.purge_txn(txn, i.expires_ms - 1, 3_600_000, 3_600_000, 3_600_000, 3_600_000)
    assert state.solved_challenges_since_txn(txn, 0) == 1
    requests.purge_txn(txn, i.expires_ms + 1, 3_600_000, 3_600_000, 3_600_000, 3_600_000)
    assert state.solved_challenges_since_txn(txn, 0) == 0
