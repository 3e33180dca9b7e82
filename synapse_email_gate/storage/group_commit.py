"""Group commit: one database transaction for every item that arrived meanwhile.

Under load, requests arrive faster than one transaction per request can be
committed: each transaction costs Synapse's bookkeeping, a round trip per
statement, a commit (an fsync on SQLite) and, on PostgreSQL, a serialisation
conflict on the shared rate-limit rows. Here the first item starts a flush at
once (a lone request waits for nothing), and items that arrive while a flush
runs go together into the next one. The flushes of a queue run one after
another, so within a process they never conflict with each other. (Two issue
batches at once on PostgreSQL were measured: 10 % fewer accepted requests per
second than one, benchmarks/bench_accepted.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from synapse.logging.context import PreserveLoggingContext, make_deferred_yieldable
from synapse.storage.database import LoggingTransaction
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from synapse_email_gate import metrics
from synapse_email_gate.storage.runner import Runner

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 100

BatchTxn = Callable[[LoggingTransaction, Sequence[T]], Sequence[R]]


class GroupCommit(Generic[T, R]):
    """Runs `txn_body(txn, items)`, which answers each item in order, for batches of items.

    `step` names the queue in the metrics and, as `email_gate_<step>`, the
    transaction in Synapse's logs and metrics.
    """

    def __init__(
        self,
        runner: Runner,
        step: str,
        txn_body: BatchTxn[T, R],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._runner = runner
        self._step = step
        self._desc = f"email_gate_{step}"
        self._txn_body = txn_body
        self._max_batch = max_batch
        self._waiting: list[tuple[T, Deferred[R]]] = []
        self._flushing = False

    async def run(self, item: T) -> R:
        """The answer for `item`, from the transaction of the batch it joined."""
        return await make_deferred_yieldable(self.enqueue(item))

    def enqueue(self, item: T) -> Deferred[R]:
        """Queue `item`; the Deferred fires with its answer (or the batch's failure).

        Callbacks added to it run in the sentinel logging context, from the flush.
        """
        answer: Deferred[R] = Deferred()
        self._waiting.append((item, answer))
        if not self._flushing:
            self._flushing = True
            self._runner.in_background(self._desc, self._flush_all)
        return answer

    async def _flush_all(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _flush(self, batch: list[tuple[T, Deferred[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            answers = await self._runner.run(self._desc, self._txn_body, items)
            if len(answers) != len(items):
                raise AssertionError(f"{self._desc}: {len(answers)} answers for {len(items)} items")
        except Exception:
            failure = Failure()
            with PreserveLoggingContext():
                for _, answer in batch:
                    answer.errback(failure)
            return
        # Waiters resume in their own logging contexts (make_deferred_yieldable).
        with PreserveLoggingContext():
            for (_, answer), result in zip(batch, answers, strict=True):
                answer.callback(result)
        # Last: nothing here may keep a waiter from its answer.
        metrics.batch_committed(self._runner.server_name, self._step, len(items))
