"""Waiting on the event loop for futures that another thread (the ledger's writer) resolves.

The writer resolves a whole commit group's futures one after the other. Each resolution here
only queues the future; the first one queued since the loop last looked schedules one
``call_soon_threadsafe``, which hands every queued result to its waiter. So a group costs the
loop one wake-up, not one per write.

Nothing on the loop side ever cancels the writer's future: a waiter that is cancelled (its
client went away, the server is shutting down) leaves the write to be committed exactly as if
someone still waited. (``asyncio.wrap_future`` would cancel it, and the writer's later
``set_result`` on a cancelled future raises.)
"""

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Bridge:
    """Delivers thread-resolved futures to the waiters of one event loop, in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Futures handed over and not yet delivered to their waiter (read on the loop only).
        self.pending = 0
        self._ready: deque[tuple[Future[Any], asyncio.Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def wait(self, source: "Future[T]") -> "asyncio.Future[T]":
        """An awaitable of ``source``'s outcome on this loop (call it on the loop)."""
        waiter: asyncio.Future[T] = self.loop.create_future()
        self.pending += 1
        source.add_done_callback(lambda done: self._resolved(done, waiter))
        return waiter

    def _resolved(self, source: "Future[Any]", waiter: "asyncio.Future[Any]") -> None:
        # Any thread: the writer, or the loop itself when the source was already done.
        self._ready.append((source, waiter))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _deliver(self) -> None:
        with self._lock:
            self._scheduled = False  # before draining: what is queued from now on schedules again
        while self._ready:
            source, waiter = self._ready.popleft()
            self.pending -= 1
            if waiter.done():  # its task was cancelled; the write itself goes on regardless
                continue
            if source.cancelled():
                waiter.cancel()
                continue
            error = source.exception()
            if error is None:
                waiter.set_result(source.result())
            else:
                waiter.set_exception(error)


class Bridges:
    """The bridge of the running loop (one in the server; a test harness may run several in turn)."""

    def __init__(self) -> None:
        self._bridge: Bridge | None = None

    def current(self) -> Bridge:
        loop = asyncio.get_running_loop()
        bridge = self._bridge
        if bridge is None or bridge.loop is not loop:
            bridge = self._bridge = Bridge(loop)
        return bridge
