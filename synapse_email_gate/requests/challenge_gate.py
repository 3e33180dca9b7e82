"""The proof-of-work challenge in the request path: the key, issuing, checking once.

`ChallengeGate.check` runs before any other work on a request: the cheap,
database-free checks of rules/proof_of_work.py first (format, MAC, expiry, the one
hash), then the difficulty in force (a valid solution of a challenge signed
with fewer bits than `AdaptiveDifficulty.minimum` is refused as too easy), then
one insert that marks the challenge used. A replay on the same
process is refused from memory without touching the database.

The MAC key is the same on every process: from `challenge.secret(_file)` if
set, else a random secret stored in `email_gate_secrets` on first use.
"""

from __future__ import annotations

import logging
import secrets

from synapse.module_api import ModuleApi

from synapse_email_gate.config.gate import ChallengeConfig
from synapse_email_gate.policy.surge import SurgeMode
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.rules import proof_of_work
from synapse_email_gate.storage.state import StateStore

logger = logging.getLogger(__name__)

# Replays remembered per process, to refuse them without a database write.
_MAX_REMEMBERED = 50_000


class ChallengeGate:
    def __init__(
        self,
        api: ModuleApi,
        config: ChallengeConfig,
        state: StateStore,
        on_demand: bool = False,
        surge: SurgeMode | None = None,
    ) -> None:
        """`surge`: while it is on in `challenge` mode, everyone must solve the
        challenge, at its level at least."""
        self._api = api
        self._surge = surge
        self._config = config
        self._state = state
        # Off for everyone, but a blocklist may require it of some clients
        # (dnsbl action `challenge`): challenges are then handed out all the same.
        self._on_demand = on_demand
        self._key: bytes | None = (
            proof_of_work.derive_key(config.secret) if config.secret is not None else None
        )
        self._difficulty = proof_of_work.AdaptiveDifficulty(
            config.difficulty,
            config.difficulty + config.max_increase,
            config.busy_threshold,
            config.busy_window_ms,
        )
        self._counting = False
        self._used: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        """Whether every request must solve the challenge now."""
        return self._config.enabled or self._surge_level() is not None

    def _surge_level(self) -> int | None:
        return None if self._surge is None else self._surge.challenge_level

    @property
    def difficulty(self) -> int:
        """The difficulty new challenges get now on this process."""
        return max(self._difficulty.current, self._surge_level() or 0)

    @property
    def _minimum(self) -> int:
        """The least difficulty a solution is accepted at now."""
        return max(self._difficulty.minimum, self._surge_level() or 0)

    async def key(self) -> bytes:
        if self._key is None:
            stored = await self._state.challenge_key(secrets.token_urlsafe(32))
            self._key = proof_of_work.derive_key(stored)
        return self._key

    async def issue(self) -> proof_of_work.Issued:
        key = await self.key()
        now = self._api.get_current_time_msec()
        if self._difficulty.due(now) and not self._counting:
            await self._follow_rate(now)
        return proof_of_work.issue(key, now, self._config.lifetime_ms, self.difficulty)

    async def _follow_rate(self, now: int) -> None:
        self._counting = True
        try:
            solved = await self._state.solved_challenges_since(now - self._difficulty.window_ms)
        except Exception:
            logger.exception("challenge: cannot count recent requests; difficulty unchanged")
            return
        finally:
            self._counting = False
        before = self._difficulty.current
        after = self._difficulty.observe(now, solved)
        if after != before:
            logger.info(
                "challenge: %d solved in the last %ds; difficulty %d -> %d bits",
                solved,
                self._difficulty.window_ms // 1000,
                before,
                after,
            )

    @property
    def available(self) -> bool:
        """Whether challenges are handed out (`GET api/challenge`)."""
        return self.enabled or self._on_demand

    async def check(
        self, challenge_value: object, nonce: object, required: bool = False
    ) -> Refusal | None:
        """None when the challenge is off (and not `required` of this request) or solved
        now for the first time; else the refusal."""
        if not (self.enabled or required):
            return None
        if not challenge_value or not nonce:
            logger.info("request refused: reason=challenge_required")
            return _refusal(proof_of_work.required())
        if not isinstance(challenge_value, str) or not isinstance(nonce, str):
            logger.info("request refused: reason=challenge_invalid")
            return _refusal(
                proof_of_work.Rejected(
                    proof_of_work.INVALID, "'challenge' and 'nonce' must be strings."
                )
            )
        now = self._api.get_current_time_msec()
        result = proof_of_work.verify(
            await self.key(), challenge_value, nonce, now, self._config.difficulty
        )
        if isinstance(result, proof_of_work.Solved):
            # The level in force, followed here too: a stockpile of easy challenges
            # is used without fetching new ones. Only for valid solutions, so that
            # refusing garbage never costs a query.
            if self._difficulty.due(now) and not self._counting:
                await self._follow_rate(now)
            if result.difficulty < self._minimum:
                result = proof_of_work.too_easy(result.difficulty, self._minimum)
        if isinstance(result, proof_of_work.Rejected):
            logger.info("request refused: reason=%s", result.errcode[len("EMAIL_GATE_") :].lower())
            return _refusal(result)
        if result.id in self._used or not await self._state.use_challenge(
            result.id, now, result.expires_ms
        ):
            logger.info("request refused: reason=challenge_replayed")
            return _refusal(_replayed())
        self._remember(result.id, result.expires_ms, now)
        return None

    def _remember(self, challenge_id: str, expires_ms: int, now: int) -> None:
        if len(self._used) >= _MAX_REMEMBERED:
            self._used = {k: v for k, v in self._used.items() if v > now}
            if len(self._used) >= _MAX_REMEMBERED:
                self._used.clear()
        self._used[challenge_id] = expires_ms


def _refusal(rejected: proof_of_work.Rejected) -> Refusal:
    return Refusal(400, rejected.errcode, rejected.message)


def _replayed() -> proof_of_work.Rejected:
    return proof_of_work.Rejected(
        proof_of_work.REPLAYED, "This anti-spam challenge was already used. Please try again."
    )
