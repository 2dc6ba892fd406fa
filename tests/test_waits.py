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


async def _one_learnuplet(ledger: Ledger) -> bytes:
    """A problem, one data and one algo: the one learnuplet they make (canonical JSON)."""
    problem = _problem()
    await _write_soon(ledger, "/problem", problem)
    await _write_soon(ledger, "/data", {"uuid": str(uuid.uuid4()), "problems": problem["uuid"]})
    await _write_soon(ledger, "/algo", {"uuid": str(uuid.uuid4()), "name": "a", "problem": problem["uuid"]})
    (uplet,) = ledger.find("learnuplet", {"problem": problem["uuid"]}, limit=10, after=None).documents
    return uplet


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
    return asyncio.ensure_future(waits.page(look.key, look.coll, look.prefixes(), look, seconds, ended))


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
        uplet = await _one_learnuplet(ledger)
        mine = Counted(ledger, "learnuplet", worker=worker, status="pending")
        answered = _wait(waits, mine, 30)
        await asyncio.sleep(0.1)
        uplet_uuid = canonical.loads(uplet)["uuid"]
        await _write_soon(ledger, f"/worker/learnuplet/{uplet_uuid}", {"worker": worker})
        page = await asyncio.wait_for(answered, 30)
        assert [canonical.loads(d)["uuid"] for d in page.documents] == [uplet_uuid]

    asyncio.run(main())


def test_documents_created_without_every_waited_for_value_wake_nobody(ledger: Ledger) -> None:
    """A new document has all its index keys in the batch that creates it: one lacking a value the
    query waits for cannot match, and nothing looks again (here fifty requests wait on one query)."""
    workflow = str(uuid.uuid4())

    async def main() -> None:
        waits = Waits(ledger)
        looks = [Counted(ledger, "problem", workflow=workflow, size_train_dataset="7") for _ in range(50)]
        pending = [_wait(waits, look, 30) for look in looks]
        await asyncio.sleep(0.1)
        assert waits.waiting == 50 and len(waits._watches) == 1
        for _ in range(3):  # the workflow waited for, not the size
            await _write_soon(ledger, "/problem", _problem(workflow, size=1))
        await asyncio.sleep(0.2)
        assert sum(look.runs for look in looks) == 50 and waits.looks == 0  # each request's own first look only
        wanted = _problem(workflow, size=7)
        await _write_soon(ledger, "/problem", wanted)
        pages = await asyncio.wait_for(asyncio.gather(*pending), 30)
        assert all(page.documents == [ledger.document("problem", wanted["uuid"])] for page in pages)
        assert sum(look.runs for look in looks) == 51 and waits.looks == 1  # once more, for all fifty

    asyncio.run(main())


def test_requests_waiting_with_the_same_query_share_each_look(ledger: Ledger) -> None:
    """A changed document that may match (a claim gives the learnuplet the worker waited for, but
    not yet the status): the query runs again once for all the requests waiting with it."""
    worker = str(uuid.uuid4())

    async def main() -> None:
        waits = Waits(ledger)
        uplet = await _one_learnuplet(ledger)
        uplet_uuid = canonical.loads(uplet)["uuid"]
        looks = [Counted(ledger, "learnuplet", worker=worker, status="done") for _ in range(20)]
        pending = [_wait(waits, look, 30) for look in looks]
        await asyncio.sleep(0.1)
        await _write_soon(ledger, f"/worker/learnuplet/{uplet_uuid}", {"worker": worker})
        await asyncio.sleep(0.2)
        assert sum(look.runs for look in looks) == 21 and not any(p.done() for p in pending)
        await _write_soon(ledger, f"/learndone/{uplet_uuid}",
                          {"status": "done", "perf": 0.5, "train_perf": [0.5], "test_perf": []})
        pages = await asyncio.wait_for(asyncio.gather(*pending), 30)
        assert all([canonical.loads(d)["uuid"] for d in page.documents] == [uplet_uuid] for page in pages)
        assert sum(look.runs for look in looks) == 22

    asyncio.run(main())


def test_the_time_running_out_answers_the_empty_page(ledger: Ledger) -> None:
    async def main() -> None:
        waits = Waits(ledger)
        look = Counted(ledger, "problem", workflow=str(uuid.uuid4()))
        started = time.monotonic()
        page = await waits.page(look.key, look.coll, look.prefixes(), look, 0.3, None)
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
        await waits.page(late.key, late.coll, late.prefixes(), late, 60, None)
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


def test_no_batch_that_makes_a_query_match_goes_unnoticed(ledger: Ledger) -> None:
    """The rule the waits rely on, checked on real batches: whenever documents start to match a
    query, a batch in between added a key under one of its prefixes where may_match says yes."""
    import itertools
    import random

    rng = random.Random(12)
    moved: list[Any] = []
    ledger.watch(moved.append)
    workflows, workers = [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4()) for _ in range(2)]
    queries = [("problem", {})] + [("problem", dict(f)) for f in itertools.chain(
        ({"workflow": w} for w in workflows), ({"size_train_dataset": n} for n in ("1", "2")),
        ({"workflow": w, "size_train_dataset": n} for w in workflows for n in ("1", "2")))]
    queries += [("learnuplet", {})] + [("learnuplet", dict(f)) for f in itertools.chain(
        ({"status": s} for s in ("todo", "pending", "done")), ({"worker": k} for k in workers),
        ({"worker": k, "status": s} for k in workers for s in ("pending", "done")))]

    def matching() -> list[set[str]]:  # the uuids of the documents matching each query
        return [{canonical.loads(d)["uuid"] for d in ledger.find(coll, f, limit=10_000, after=None).documents}
                for coll, f in queries]

    problems: list[str] = []
    for _ in range(40):
        writes: list[tuple[str, dict[str, Any]]] = []
        for _ in range(rng.randint(1, 4)):
            todo = [canonical.loads(d) for d in ledger.find("learnuplet", {"status": "todo"}, limit=50,
                                                            after=None).documents]
            pending = [canonical.loads(d) for d in ledger.find("learnuplet", {"status": "pending"}, limit=50,
                                                               after=None).documents]
            choice = rng.random()
            if choice < 0.3 or not problems:
                problem = _problem(rng.choice(workflows), size=rng.choice([1, 2]))
                problems.append(problem["uuid"])
                writes.append(("/problem", problem))
            elif choice < 0.5:
                writes.append(("/data", {"uuid": str(uuid.uuid4()), "problems": rng.choice(problems)}))
            elif choice < 0.7:
                writes.append(("/algo", {"uuid": str(uuid.uuid4()), "name": "a", "problem": rng.choice(problems)}))
            elif choice < 0.85 and todo:
                writes.append((f"/worker/learnuplet/{rng.choice(todo)['uuid']}", {"worker": rng.choice(workers)}))
            elif pending:
                uplet = rng.choice(pending)
                writes.append((f"/learndone/{uplet['uuid']}", {"status": "done", "perf": 0.5,
                               "train_perf": [0.5] * len(uplet["train_data"]), "test_perf": []}))
        before, seen = matching(), len(moved)
        futures = [ledger.write(ADMIN.sign("POST", path, json=body)) for path, body in writes]  # one batch or a few
        for future in futures:
            try:
                future.result(timeout=30)
            except Exception:  # a refused write (a claim raced by another in the batch): nothing to notice
                pass
        deadline = time.monotonic() + 10  # watchers hear of a batch just after its writers do
        while len(moved) > seen and moved[-1].size < ledger.head()[0] and time.monotonic() < deadline:
            time.sleep(0.001)
        while ledger.head()[0] > (moved[-1].size if moved else 0) and time.monotonic() < deadline:
            time.sleep(0.001)
        after = matching()
        for (coll, filters), was, now in zip(queries, before, after, strict=True):
            if now - was:
                prefixes = ledger.read_prefixes(coll, filters)
                noticed = any(m.may_match(coll, prefixes, positions) for m in moved[seen:]
                              for positions in m.added_under(set(prefixes)).values())
                assert noticed, (coll, filters)
