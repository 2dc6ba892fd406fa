"""api.waits in-process, over an in-memory ledger: which committed batches wake which waiting
queries, how many times a query runs again, and what ends a wait (its seconds, its client going
away, serving stopping). The HTTP behaviour is tests/test_waiting.py's."""

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from signing import Signer

from api.waits import Ended, Waits, wait_seconds
from ledger import canonical, keys
from ledger.config import LedgerConfig
from ledger.entry import encode
from ledger.errors import ValidationError
from ledger.genesis import genesis_entry
from ledger.query import Page
from ledger.service import Ledger

ADMIN = Signer(keys.private_pem(keys.new_private_key()), "admin")


@pytest.fixture
def ledger() -> Any:
    public = keys.public_b64(load_pem_private_key(ADMIN.key_pem, None))  # type: ignore[arg-type]
    members = [{"key_id": "admin", "public_key": public, "roles": ["admin", "analytics", "viewer", "compute"]}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/ledger", keys.public_b64(node), members, 300, int(time.time() * 1000))
    ledger = Ledger.in_memory(LedgerConfig(), encode(genesis), node)
    yield ledger
    ledger.close()


def _write(ledger: Ledger, path: str, body: dict[str, Any]) -> dict[str, Any]:
    committed = ledger.write(ADMIN.sign("POST", path, json=body)).result(timeout=30)
    return committed.body


async def _write_soon(ledger: Ledger, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.get_running_loop().run_in_executor(None, _write, ledger, path, body)


def _problem(workflow: str | None = None, size: int = 1) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "workflow": workflow or str(uuid.uuid4()), "test_dataset": [],
            "size_train_dataset": size}


class Counted:
    """A query's look, counting how often it runs."""

    def __init__(self, ledger: Ledger, coll: str, **filters: str) -> None:
        self.ledger, self.coll, self.filters = ledger, coll, filters
        self.runs = 0

    def __call__(self) -> Awaitable[Page]:
        self.runs += 1
        return asyncio.get_running_loop().run_in_executor(
            None, lambda: self.ledger.find(self.coll, self.filters, limit=1000, after=None)
        )

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.coll, tuple(sorted(self.filters.items()))

    def prefixes(self) -> tuple[bytes, ...]:
        return self.ledger.read_prefixes(self.coll, self.filters)


def _wait(waits: Waits, look: Counted, seconds: float, ended: Ended | None = None) -> "asyncio.Future[Page]":
    return asyncio.ensure_future(waits.page(look.key, look.prefixes(), look, seconds, ended))


def test_a_batch_wakes_only_the_queries_it_could_answer(ledger: Ledger) -> None:
    workflow = str(uuid.uuid4())

    async def main() -> None:
        waits = Waits(ledger)
        wanted = Counted(ledger, "problem", workflow=workflow)
        other_collection = Counted(ledger, "algo", problem=str(uuid.uuid4()))
        other_value = Counted(ledger, "problem", workflow=str(uuid.uuid4()))
        answered = _wait(waits, wanted, 30)
        idle = [_wait(waits, other_collection, 1), _wait(waits, other_value, 1)]
        await asyncio.sleep(0.1)
        for _ in range(3):  # batches that touch none of them
            await _write_soon(ledger, "/problem", _problem())
        problem = _problem(workflow)
        await _write_soon(ledger, "/problem", problem)
        page = await asyncio.wait_for(answered, 30)
        assert page.documents == [ledger.document("problem", problem["uuid"])]
        assert wanted.runs == 2  # its own first look, and once after the batch that added its workflow
        for pending in idle:
            assert (await pending).documents == []
        assert other_collection.runs == other_value.runs == 1  # never woken
        assert waits.waiting == 0 and not waits._by_prefix and not waits._watches

    asyncio.run(main())


def test_a_changed_document_that_now_matches_wakes_its_query(ledger: Ledger) -> None:
    """Not only new documents: an update that gives a field the value waited for (a claim sets the
    learnuplet's worker)."""
    worker = str(uuid.uuid4())

    async def main() -> None:
        waits = Waits(ledger)
        problem = _problem()
        await _write_soon(ledger, "/problem", problem)
        await _write_soon(ledger, "/data", {"uuid": str(uuid.uuid4()), "problems": problem["uuid"]})
        await _write_soon(ledger, "/algo", {"uuid": str(uuid.uuid4()), "name": "a", "problem": problem["uuid"]})
        (uplet,) = ledger.find("learnuplet", {"problem": problem["uuid"]}, limit=10, after=None).documents
        mine = Counted(ledger, "learnuplet", worker=worker, status="pending")
        answered = _wait(waits, mine, 30)
        await asyncio.sleep(0.1)
        uplet_uuid = canonical.loads(uplet)["uuid"]
        await _write_soon(ledger, f"/worker/learnuplet/{uplet_uuid}", {"worker": worker})
        page = await asyncio.wait_for(answered, 30)
        assert [canonical.loads(d)["uuid"] for d in page.documents] == [uplet_uuid]

    asyncio.run(main())


def test_requests_waiting_with_the_same_query_share_each_look(ledger: Ledger) -> None:
    workflow = str(uuid.uuid4())

    async def main() -> None:
        waits = Waits(ledger)
        looks = [Counted(ledger, "problem", workflow=workflow, size_train_dataset="7") for _ in range(50)]
        pending = [_wait(waits, look, 30) for look in looks]
        await asyncio.sleep(0.1)
        assert waits.waiting == 50 and len(waits._watches) == 1
        # Batches that add under the shared prefix (workflow) but do not match (size 1): looked at
        # again once each, for all fifty.
        for _ in range(3):
            await _write_soon(ledger, "/problem", _problem(workflow, size=1))
        await asyncio.sleep(0.2)
        first = looks[0]  # the watch's looks run through the first request's
        assert sum(look.runs for look in looks) - 50 <= 3 and first.runs >= 2
        await _write_soon(ledger, "/problem", _problem(workflow, size=7))
        pages = await asyncio.wait_for(asyncio.gather(*pending), 30)
        assert all(len(page.documents) == 1 for page in pages)
        assert len({page.documents[0] for page in pages}) == 1

    asyncio.run(main())


def test_the_time_running_out_answers_the_empty_page(ledger: Ledger) -> None:
    async def main() -> None:
        waits = Waits(ledger)
        look = Counted(ledger, "problem", workflow=str(uuid.uuid4()))
        started = time.monotonic()
        page = await waits.page(look.key, look.prefixes(), look, 0.3, None)
        assert page.documents == [] and time.monotonic() - started >= 0.3
        assert waits.waiting == 0 and not waits._by_prefix

    asyncio.run(main())


def test_a_client_that_goes_away_stops_its_wait_and_leaves_nothing_behind(ledger: Ledger) -> None:
    async def main() -> None:
        waits = Waits(ledger)
        gone = asyncio.Event()

        async def receive() -> dict[str, Any]:  # as an ASGI server tells an app its client left
            await gone.wait()
            return {"type": "http.disconnect"}

        look = Counted(ledger, "problem", workflow=str(uuid.uuid4()))
        waiting = _wait(waits, look, 60, Ended({}, receive))
        await asyncio.sleep(0.1)
        assert waits.waiting == 1 and waits._by_prefix
        gone.set()
        page = await asyncio.wait_for(waiting, 5)
        assert page.documents == []
        assert waits.waiting == 0 and not waits._by_prefix and not waits._watches
        # Batches afterwards find nobody to wake: no look, no wake-up of the loop.
        await _write_soon(ledger, "/problem", _problem())
        assert look.runs == 1 and not waits._ready

    asyncio.run(main())


def test_closing_ends_every_wait_at_once_and_later_ones_do_not_wait(ledger: Ledger) -> None:
    async def main() -> None:
        waits = Waits(ledger)
        looks = [Counted(ledger, "problem", workflow=str(uuid.uuid4())) for _ in range(5)]
        pending = [_wait(waits, look, 60) for look in looks]
        size = ledger.head()[0]
        following = asyncio.ensure_future(waits.grown(size, 60, None))
        await asyncio.sleep(0.1)
        waits.close()
        pages = await asyncio.wait_for(asyncio.gather(*pending, following), 5)
        assert all(page.documents == [] for page in pages[:-1])
        started = time.monotonic()
        late = Counted(ledger, "problem", workflow=str(uuid.uuid4()))
        await waits.page(late.key, late.prefixes(), late, 60, None)
        await waits.grown(size, 60, None)
        assert time.monotonic() - started < 5

    asyncio.run(main())


def test_a_follower_waits_for_the_next_entry(ledger: Ledger) -> None:
    async def main() -> None:
        waits = Waits(ledger)
        size = ledger.head()[0]
        following = asyncio.ensure_future(waits.grown(size, 30, None))
        await asyncio.sleep(0.1)
        assert not following.done() and waits.entry_waiters == 1
        await _write_soon(ledger, "/problem", _problem())
        await asyncio.wait_for(following, 30)
        assert ledger.head()[0] == size + 1 and waits.entry_waiters == 0
        started = time.monotonic()
        await waits.grown(size + 1, 0.3, None)  # nothing comes
        assert time.monotonic() - started >= 0.3

    asyncio.run(main())


@pytest.mark.parametrize("text", ["0", "0.0", "-0", "60.5", "61", "-1", "1e3", "6e1.5", "abc", "", " 1", "1000",
                                  "inf", "nan", "1_0", "01", ".5", "5.", "0x10", "1" + "0" * 40])
def test_wait_must_be_more_than_zero_and_at_most_sixty_seconds(text: str) -> None:
    with pytest.raises(ValidationError, match="'wait'"):
        wait_seconds(text)


def test_wait_seconds() -> None:
    assert wait_seconds(None) is None
    assert wait_seconds("60") == 60 and wait_seconds("0.25") == 0.25 and wait_seconds("1") == 1
    assert wait_seconds("1e1") == 10 and wait_seconds("1e-05") == 0.00001 and wait_seconds("6E+1") == 60
