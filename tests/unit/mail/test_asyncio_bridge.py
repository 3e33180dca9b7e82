"""AsyncioThread under a real Twisted reactor (epoll, as Synapse runs, and asyncio).

A reactor runs once per process, so each case runs a script in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import sys

    if sys.argv[1] == "asyncio":
        import asyncio
        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()

    import asyncio
    import random
    import threading

    from synapse.logging.context import SENTINEL_CONTEXT, LoggingContext, current_context
    from twisted.internet import defer, task
    from twisted.python.failure import Failure

    from synapse_email_gate.mail.asyncio_bridge import AsyncioThread


    class Boom(Exception):
        pass


    async def double(x, delay=0.0):
        await asyncio.sleep(delay)  # needs a running asyncio loop
        assert threading.current_thread().name == "email-gate-smtp"
        return 2 * x


    async def fail():
        await asyncio.sleep(0.01)
        raise Boom("bang")


    async def main(reactor):
        print(type(reactor).__name__)
        bridge = AsyncioThread(reactor)
        try:
            # A result, delivered on the reactor thread.
            threads = []
            d = bridge.submit(double(21, 0.01))
            d.addCallback(lambda r: threads.append(threading.current_thread()) or r)
            assert await d == 42
            assert threads == [threading.main_thread()]

            # An exception arrives as a Failure of the original type.
            (failure,) = await bridge.submit(fail()).addErrback(lambda f: [f])
            assert isinstance(failure, Failure) and failure.check(Boom), failure
            assert str(failure.value) == "bang"
            try:
                await bridge.submit(fail())
            except Boom:
                pass
            else:
                raise AssertionError("no exception")

            # Many concurrent submissions; the reactor keeps running meanwhile.
            ticks = []
            reactor.callLater(0.01, ticks.append, 1)
            results = await defer.gatherResults(
                [bridge.submit(double(i, random.uniform(0, 0.05))) for i in range(500)]
            )
            assert results == [2 * i for i in range(500)]
            assert ticks == [1]

            # run() keeps Synapse's log context, on success and on failure.
            # While it waits, the reactor runs in the sentinel context (no leak).
            with LoggingContext(name="request", server_name="test") as ctx:
                seen = []
                reactor.callLater(0, lambda: seen.append(current_context()))
                assert await bridge.run(double(5, 0.05)) == 10
                assert current_context() is ctx
                assert seen == [SENTINEL_CONTEXT], seen
                try:
                    await bridge.run(fail())
                except Boom:
                    pass
                assert current_context() is ctx

            # Cancelling the Deferred cancels the coroutine.
            cancelled = threading.Event()

            async def forever():
                try:
                    await asyncio.sleep(60)
                finally:
                    cancelled.set()

            d = bridge.submit(forever())
            await task.deferLater(reactor, 0.05)
            d.cancel()
            try:
                await d
            except defer.CancelledError:
                pass
            assert cancelled.wait(5)
        finally:
            bridge.stop()
        assert not [t for t in threading.enumerate() if t.name == "email-gate-smtp"]

        # A stopped bridge starts again on the next submission.
        assert await bridge.submit(double(1)) == 2
        bridge.stop()
        print("OK")


    task.react(main)
    """
)


@pytest.mark.parametrize(
    ("reactor", "expected"), [("epoll", "EPollReactor"), ("asyncio", "AsyncioSelectorReactor")]
)
def test_bridge_under_real_reactor(tmp_path: Path, reactor: str, expected: str) -> None:
    script = tmp_path / "bridge_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), reactor],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == [expected, "OK"], proc.stdout + proc.stderr
