"""The surge mode in force on this process, read from the shared row every few seconds.

Every process applies what the row says (requests/challenge_gate.py raises the
challenge, requests/service.py sends requests to approval); only the
background-tasks process measures and switches (moderation/surge.py). Each process
sets the `surge_on` gauge to the mode it applies, so no process reports a switch
another one has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from synapse_email_gate import metrics
from synapse_email_gate.rules.surge import APPROVAL, CHALLENGE, SurgeState
from synapse_email_gate.storage.surge import SurgeStore

logger = logging.getLogger(__name__)


class SurgeMode:
    def __init__(self, store: SurgeStore, clock: Callable[[], int], server_name: str) -> None:
        self._store = store
        self._clock = clock
        self._server_name = server_name
        self._state = SurgeState()

    @property
    def state(self) -> SurgeState:
        """The state in force now (a moderator's switch past its end is off)."""
        return self._state.in_force(self._clock())

    def learn(self, state: SurgeState) -> None:
        """A switch this process just wrote: in force here at once."""
        if state != self._state:
            logger.info("surge: mode %s (cause %s %s)", state.mode, state.cause, state.scope)
        self._state = state
        # A moderator's switch whose duration ran out is off here before it is rewritten.
        metrics.surge_state(self._server_name, self.state.mode)

    async def refresh(self) -> None:
        try:
            self.learn(await self._store.current())
        except Exception:
            # Fail closed: a surge in force stays in force until the row can be read.
            logger.exception("surge: cannot read the shared state; keeping the last one")

    @property
    def approval(self) -> bool:
        """Whether new requests wait for a moderator."""
        return self.state.mode == APPROVAL

    @property
    def challenge_level(self) -> int | None:
        """The challenge difficulty the surge demands, or None."""
        state = self.state
        return state.level if state.mode == CHALLENGE else None
