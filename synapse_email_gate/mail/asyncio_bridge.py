"""Run asyncio coroutines (aiosmtplib) from Synapse's Twisted reactor.

Synapse runs Twisted's epoll reactor, not asyncio, so asyncio coroutines cannot be
awaited directly. :class:`AsyncioThread` keeps one private asyncio event loop in a
daemon thread; coroutines are submitted to it and their outcome is handed back to
the reactor thread as a Deferred. Twisted's shared thread pool is never used (Synapse
needs it for password hashing).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from synapse.logging.context import make_deferred_yieldable
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorFromThreads

T = TypeVar("T")


class AsyncioThread:
    """One asyncio event loop in a daemon thread, bridged to a Twisted reactor."""

    def __init__(self, reactor: IReactorFromThreads, name: str = "email-gate-smtp") -> None:
        self._reactor = reactor
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread if it is not running; return the loop."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run_loop, args=(loop,), name=self._name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling what still runs on it) and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Deferred[T]:
        """Run ``coro`` on the asyncio loop; the Deferred fires on the reactor thread.

        The Deferred fails with the coroutine's own exception. Cancelling the Deferred
        cancels the coroutine. The Deferred does not follow Synapse's log-context
        rules by itself: await :meth:`run` from Synapse code instead.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.start())

        def cancel(_: Deferred[T]) -> None:
            future.cancel()

        deferred: Deferred[T] = Deferred(cancel)

        def fire(done: concurrent.futures.Future[T]) -> None:
            if deferred.called:  # already cancelled from the reactor side
                return
            if done.cancelled():
                deferred.errback(CancelledError())
                return
            exc = done.exception()
            if exc is not None:
                deferred.errback(exc)
            else:
                deferred.callback(done.result())

        future.add_done_callback(lambda done: self._reactor.callFromThread(fire, done))
        return deferred

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` from Synapse code, keeping the log context right."""
        return await make_deferred_yieldable(self.submit(coro))
