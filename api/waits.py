"""Requests that wait for the ledger to change: ``GET /{collection}?...&wait=S`` until a document
matches, ``GET /ledger/entries?start=N&wait=S`` (N the log size) until the next entry.

No thread per waiting request: each waits on the event loop. The ledger tells :class:`Waits` of
each committed batch on its pipeline thread (``LedgerDoor.watch``). There, and only while some
request waits, the batch's state writes are matched against the read prefixes being waited on (a
document can only start to match a query in a batch that adds a key under one of the prefixes the
query reads: ``LedgerDoor.read_prefixes``), and what matched goes to the loop, one
``call_soon_threadsafe`` per burst of batches (as :mod:`api.bridge` does for writes). On the loop,
only the queries a batch could have answered run again, on the read pool, once for all the
requests that wait with the same query: not those whose documents it created without every key
they read (``Moved.may_match``). A batch that touches nothing waited on costs one pass over its
writes on the pipeline thread and no wake-up of the loop.

A request is authenticated once, when it arrives. A client that goes away while it waits stops
its wait (the ASGI ``http.disconnect``, or the end of what it sends: :class:`Ended`); the last one
waiting on a query takes the query's watch with it. When serving stops (:meth:`Waits.close`),
every wait ends at once, as if its time had run out.
"""

import asyncio
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from api.door import LedgerDoor
from api.signed import CLIENT_EOF
from ledger.errors import ValidationError
from ledger.query import Page
from ledger.service import Moved

#: The longest wait a request may ask for, in seconds.
MAX_WAIT_S = 60
#: Scope key under which the app (api.app.App) leaves the ASGI ``receive`` of the request.
RECEIVE = "orchestrator.receive"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Look = Callable[[], Awaitable[Page]]

#: A number as JSON (and the contract's ``"type": "number"``) writes it.
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def wait_seconds(text: str | None) -> float | None:
    """The ``wait`` query parameter, in seconds (None when absent). Raises ValidationError."""
    if text is None:
        return None
    if len(text) > 32 or not _NUMBER.fullmatch(text) or not 0 < float(text) <= MAX_WAIT_S:
        raise ValidationError(f"query parameter 'wait' must be a number of seconds, more than 0 and at most "
                              f"{MAX_WAIT_S}, not {text[:32]!r}")
    return float(text)


def ended_of(scope: dict[str, Any]) -> "Ended | None":
    """What tells when the request's client is done with it, or None when the server cannot say."""
    receive: Receive | None = scope.get(RECEIVE)
    return None if receive is None else Ended(scope, receive)


class Ended:
    """Awaits the end of a request's client: the ASGI ``http.disconnect``, or the client closing its
    sending side (api.signed.CLIENT_EOF: closed, or half-closed and still reading the answer)."""

    def __init__(self, scope: dict[str, Any], receive: Receive) -> None:
        self.scope = scope
        self.receive = receive

    async def __call__(self) -> None:
        while not self.scope.get(CLIENT_EOF):
            if (await self.receive())["type"] == "http.disconnect":
                return


class _Watch:
    """One query being waited on, by one or more requests; it settles with the first page that has
    documents (or None when serving stops)."""

    def __init__(self, waits: "Waits", key: Hashable, coll: str, prefixes: tuple[bytes, ...], look: Look) -> None:
        self.waits = waits
        self.key = key
        self.coll = coll
        self.prefixes = prefixes
        self.look = look
        self.clients = 0
        self.found: asyncio.Future[Page | None] = waits.loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def changed(self) -> None:
        """A batch added a key under one of its prefixes: look again (once more, if looking now)."""
        if self.found.done():
            return
        if self._task is not None:
            self._again = True
            return
        self._task = self.waits.loop.create_task(self._looking())

    async def _looking(self) -> None:
        try:
            while True:
                self._again = False
                self.waits.looks += 1
                page = await self.look()
                if page.documents:
                    self.settle(page)
                    return
                if not self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the waiting requests answer with it (a storage error: 503)
            if not self.found.done() and self.clients:
                self.found.set_exception(e)
            self.waits.forget(self)
        finally:
            self._task = None

    def settle(self, page: Page | None) -> None:
        if not self.found.done():
            self.found.set_result(page)
        self.waits.forget(self)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Waits:
    """The requests waiting for the ledger to change, on one event loop."""

    def __init__(self, ledger: LedgerDoor) -> None:
        self.ledger = ledger
        #: Set once serving stops: waits end at once.
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[Hashable, _Watch] = {}
        #: Read prefix -> the watches reading it. Changed on the loop; the pipeline thread only
        #: tests membership (one dict lookup per written key, under the GIL).
        self._by_prefix: dict[bytes, set[_Watch]] = {}
        #: Requests waiting for the log to grow, and what they wait on (resolved at the next batch).
        self.entry_waiters = 0
        self._collection_waiters = 0
        #: Queries run again after a batch that may answer them, so far (not the requests' own first look).
        self.looks = 0
        self._grown: asyncio.Future[None] | None = None
        self._ready: deque[tuple[Moved, dict[bytes, list[bytes]]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        ledger.watch(self._moved)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the first wait (or a test harness running another loop)
            self._loop = loop
            self._watches.clear()
            self._by_prefix.clear()
            self._grown = None
        return loop

    @property
    def waiting(self) -> int:
        """Requests waiting now (any thread may read it)."""
        return self._collection_waiters + self.entry_waiters

    # -- the pipeline thread ----------------------------------------------------------------

    def _moved(self, moved: Moved) -> None:
        loop = self._loop
        if loop is None:
            return
        watched = self._by_prefix
        added = moved.added_under(watched) if watched else {}
        if not added and not self.entry_waiters:
            return  # nothing waited on changed: no wake-up
        self._ready.append((moved, added))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is left waiting
            pass

    # -- the loop -------------------------------------------------------------------------

    def _deliver(self) -> None:
        with self._lock:
            self._scheduled = False  # before draining: what is queued from now on schedules again
        changed: set[_Watch] = set()
        grew = False
        while self._ready:
            moved, added = self._ready.popleft()
            grew = True
            for prefix, positions in added.items():
                for watch in self._by_prefix.get(prefix, ()):
                    if watch not in changed and moved.may_match(watch.coll, watch.prefixes, positions):
                        changed.add(watch)
        for watch in changed:
            watch.changed()
        if grew and self._grown is not None:
            self._grown.set_result(None)
            self._grown = None

    def forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.key) is watch:
            del self._watches[watch.key]
        for prefix in watch.prefixes:
            watches = self._by_prefix.get(prefix)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._by_prefix[prefix]

    async def page(
        self, key: Hashable, coll: str, prefixes: tuple[bytes, ...], look: Look, seconds: float,
        ended: "Ended | None",
    ) -> Page:
        """``look()``'s page as soon as it has documents; its empty page once ``seconds`` pass, the
        client goes away (``ended`` tells) or serving stops. ``key`` names the query (requests with
        the same key share one watch); ``prefixes`` are those it reads in collection ``coll``."""
        loop = self.loop
        watch = self._watches.get(key)
        if watch is None or watch.found.done():
            watch = self._watches[key] = _Watch(self, key, coll, prefixes, look)
            for prefix in prefixes:
                self._by_prefix.setdefault(prefix, set()).add(watch)
        watch.clients += 1  # watched before the first look: a batch committed after it wakes the watch
        self._collection_waiters += 1
        try:
            page = await look()
            if page.documents or self.closed:
                return page
            if await self._until(watch.found, seconds, ended, loop):
                found = watch.found.result()
                if found is not None:
                    return found
            return page
        finally:
            self._collection_waiters -= 1
            watch.clients -= 1
            if watch.clients == 0:
                watch.stop()
                self.forget(watch)

    async def grown(self, size: int, seconds: float, ended: "Ended | None") -> None:
        """Until the log holds more than ``size`` entries, ``seconds`` pass, the client goes away or
        serving stops."""
        loop = self.loop
        if self._grown is None:
            self._grown = loop.create_future()
        grown = self._grown
        self.entry_waiters += 1  # before reading the head: a batch committed after it wakes us
        try:
            if self.ledger.head()[0] > size or self.closed:
                return
            await self._until(grown, seconds, ended, loop)
        finally:
            self.entry_waiters -= 1

    async def _until(
        self, done: "asyncio.Future[Any]", seconds: float, ended: "Ended | None", loop: asyncio.AbstractEventLoop
    ) -> bool:
        """Whether ``done`` completed within ``seconds``, before the client went away."""
        if done.done():
            return True
        awaited: list[asyncio.Future[Any]] = [done]
        gone = None
        if ended is not None:
            gone = loop.create_task(ended())
            awaited.append(gone)
        try:
            await asyncio.wait(awaited, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if gone is not None:
                gone.cancel()
        return done.done()

    def close(self) -> None:
        """Serving stops: every wait ends now, and later ones do not wait (call it on the loop)."""
        self.closed = True
        for watch in list(self._watches.values()):
            watch.stop()
            watch.settle(None)
        if self._grown is not None and not self._grown.done():
            self._grown.set_result(None)
        self._grown = None
