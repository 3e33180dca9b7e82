"""What the processes share besides requests and tokens: counters, the secrets
the module made itself, the room events already handled, the challenges used."""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage.runner import Runner

# Rows of email_gate_state.
POLICY_GENERATION = "policy_generation"
# Rows of email_gate_secrets.
CHALLENGE_KEY = "challenge_key"
CLIENT_ADDRESS_KEY = "client_address_key"


def get_counter_txn(txn: LoggingTransaction, name: str) -> int:
    txn.execute("SELECT value FROM email_gate_state WHERE name = ?", (name,))
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


def bump_counter_txn(txn: LoggingTransaction, name: str) -> int:
    txn.execute(
        """
        INSERT INTO email_gate_state (name, value) VALUES (?, 1)
        ON CONFLICT (name) DO UPDATE SET value = email_gate_state.value + 1
        """,
        (name,),
    )
    return get_counter_txn(txn, name)


def stored_secret_txn(txn: LoggingTransaction, name: str, candidate: str) -> str:
    """The secret stored under `name`; `candidate` becomes it if there is none yet."""
    txn.execute(
        "INSERT INTO email_gate_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, candidate),
    )
    txn.execute("SELECT value FROM email_gate_secrets WHERE name = ?", (name,))
    row = txn.fetchone()
    assert row is not None
    return str(row[0])


def claim_event_txn(txn: LoggingTransaction, event_id: str, now_ms: int) -> bool:
    """True for the first process to claim a room event: it handles the event."""
    txn.execute(
        """
        INSERT INTO email_gate_handled_events (event_id, ts) VALUES (?, ?)
        ON CONFLICT (event_id) DO NOTHING
        """,
        (event_id, now_ms),
    )
    return txn.rowcount == 1


def use_challenge_txn(
    txn: LoggingTransaction, challenge_id: str, now_ms: int, expires_ms: int
) -> bool:
    """Mark a solved challenge used; False when it already was (a replay)."""
    txn.execute(
        """
        INSERT INTO email_gate_used_challenges (id, used_ts, expires_ts) VALUES (?, ?, ?)
        ON CONFLICT (id) DO NOTHING
        """,
        (challenge_id, now_ms, expires_ms),
    )
    return txn.rowcount == 1


def solved_challenges_since_txn(txn: LoggingTransaction, since_ms: int) -> int:
    """How many challenges were solved (by every process) since `since_ms`."""
    txn.execute("SELECT COUNT(*) FROM email_gate_used_challenges WHERE used_ts >= ?", (since_ms,))
    row = txn.fetchone()
    return 0 if row is None else int(row[0])


class StateStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def policy_generation(self) -> int:
        """How many times the policy changed (any process); 0 before the first change."""
        return await self._runner.run(
            "email_gate_policy_generation", get_counter_txn, POLICY_GENERATION
        )

    async def bump_policy_generation(self) -> int:
        """Tell every process the policy changed; the new generation."""
        return await self._runner.run("email_gate_bump_policy", bump_counter_txn, POLICY_GENERATION)

    async def challenge_key(self, candidate: str) -> str:
        """The secret challenges are signed with; `candidate` if none was stored yet."""
        return await self._runner.run(
            "email_gate_challenge_key", stored_secret_txn, CHALLENGE_KEY, candidate
        )

    async def client_address_key(self, candidate: str) -> str:
        """The secret client addresses are sealed with; `candidate` if none was stored yet."""
        return await self._runner.run(
            "email_gate_seal_key", stored_secret_txn, CLIENT_ADDRESS_KEY, candidate
        )

    async def claim_event(self, event_id: str, now_ms: int) -> bool:
        """True for the one process that is to handle this room event."""
        return await self._runner.run("email_gate_claim_event", claim_event_txn, event_id, now_ms)

    async def use_challenge(self, challenge_id: str, now_ms: int, expires_ms: int) -> bool:
        """Mark a solved challenge used; False for a replay."""
        return await self._runner.run(
            "email_gate_use_challenge", use_challenge_txn, challenge_id, now_ms, expires_ms
        )

    async def solved_challenges_since(self, since_ms: int) -> int:
        return await self._runner.run(
            "email_gate_challenge_rate", solved_challenges_since_txn, since_ms
        )
