"""Writes awaited on the event loop (api/bridge.py, api/writes.py), in process.

A burst of results from the writer thread wakes the loop once; a waiter that is cancelled never
cancels the writer's future (which the writer then resolves as usual); a full queue refuses a
write before the ledger sees it.
"""

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import falcon
import pytest

from api.bridge import Bridge
from api.writes import Writes


def _in_thread(work: Any) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def test_a_burst_of_results_wakes_the_loop_once() -> None:
    async def main() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()
        bridge = Bridge(loop)
        wakeups = 0
        schedule = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return schedule(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        sources: list[Future[int]] = [Future() for _ in range(100)]
        waiters = [bridge.wait(source) for source in sources]
        _in_thread(lambda: [source.set_result(i) for i, source in enumerate(sources)])  # one commit group
        results = list(await asyncio.gather(*waiters))
        return results, wakeups, bridge.pending

    results, wakeups, pending = asyncio.run(main())
    assert results == list(range(100))
    assert wakeups == 1 and pending == 0


def test_a_cancelled_waiter_never_cancels_the_write() -> None:
    async def main() -> tuple[Future[str], int, list[BaseException]]:
        bridge = Bridge(asyncio.get_running_loop())
        source: Future[str] = Future()
        waiter = bridge.wait(source)
        waiter.cancel()  # the client went away, or its task was cancelled at shutdown
        failures: list[BaseException] = []

        def commit() -> None:  # what the writer does once the group is durable
            try:
                source.set_result("committed")
            except BaseException as e:  # the writer must never see an error here
                failures.append(e)

        _in_thread(commit)
        await asyncio.sleep(0)  # let the delivery run
        await asyncio.sleep(0)
        return source, bridge.pending, failures

    source, pending, failures = asyncio.run(main())
    assert failures == [] and not source.cancelled() and source.result() == "committed"
    assert pending == 0


def test_errors_reach_the_waiter() -> None:
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop())
        source: Future[int] = Future()
        waiter = bridge.wait(source)
        _in_thread(lambda: source.set_exception(ValueError("refused")))
        with pytest.raises(ValueError, match="refused"):
            await waiter

    asyncio.run(main())


class _QueueingLedger:
    """Stands in for Ledger.write: every write waits until the test resolves it."""

    def __init__(self) -> None:
        self.submitted: list[Future[str]] = []

    def write(self, request: object, media_type: str) -> "Future[str]":
        future: Future[str] = Future()
        self.submitted.append(future)
        return future


def test_a_full_queue_refuses_a_write_before_the_ledger_sees_it() -> None:
    async def main() -> None:
        ledger = _QueueingLedger()
        writes = Writes(ledger, max_queued=2)  # type: ignore[arg-type]
        first = asyncio.ensure_future(writes.submit(object(), "application/json"))  # type: ignore[arg-type]
        second = asyncio.ensure_future(writes.submit(object(), "application/json"))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert writes.queued == 2
        with pytest.raises(falcon.HTTPServiceUnavailable) as refused:
            await writes.submit(object(), "application/json")  # type: ignore[arg-type]
        assert len(ledger.submitted) == 2, "the refused write reached the ledger"
        assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "1"
        _in_thread(lambda: [f.set_result("ok") for f in ledger.submitted])
        assert await first == "ok" and await second == "ok"
        assert writes.queued == 0
        third = asyncio.ensure_future(writes.submit(object(), "application/json"))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        _in_thread(lambda: ledger.submitted[2].set_result("ok"))
        assert await third == "ok"

    asyncio.run(main())
