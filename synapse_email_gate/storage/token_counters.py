"""Synapse's counters of registration-token uses, made to hold under a burst.

Every registration with a token updates that token's row of Synapse's
`registration_tokens` twice: `set_registration_token_pending` (pending+1) when
the token stage passes, `use_registration_token` (pending-1, completed+1) once
the account exists. On PostgreSQL (REPEATABLE READ) concurrent updates of one
row fail with a serialisation error, and Synapse runs each of these transactions
at most 5 times in a row without a pause. Twenty people registering together
with one invite token were enough to exhaust that: the loser answered 500,
either at the token stage or, worse, after its account was made (the use never
counted, the token left pending).

The module wraps these two store methods, on the process it runs in, so that a
serialisation failure that gets through Synapse's tries is tried again after a
short random pause (storage/runner.py `Runner.retried`); each call is one whole
transaction, re-read on every try, so nothing is counted twice. This reaches
into Synapse's datastore (no module API counts token uses); when the methods
are not there, nothing is wrapped and a warning says so.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi

from synapse_email_gate.storage.runner import Runner

logger = logging.getLogger(__name__)

COUNTERS = ("set_registration_token_pending", "use_registration_token")
_WRAPPED = "_email_gate_retried"


def retry_token_counters(api: ModuleApi, runner: Runner) -> None:
    """Wrap Synapse's two token-use counters of this process (see above)."""
    hs: Any = api._hs  # private: no module API counts token uses
    store = hs.get_datastores().main
    for name in COUNTERS:
        counter = getattr(store, name, None)
        if counter is None:
            logger.warning(
                "Synapse's datastore has no %s: its token counters are not retried", name
            )
            continue
        if getattr(counter, _WRAPPED, False):
            continue
        setattr(store, name, _retrying(runner, name, counter))


def _retrying(
    runner: Runner, name: str, counter: Callable[[str], Awaitable[None]]
) -> Callable[[str], Awaitable[None]]:
    @functools.wraps(counter)
    async def retried(token: str) -> None:
        await runner.retried(name, lambda: counter(token))

    setattr(retried, _WRAPPED, True)
    return retried
