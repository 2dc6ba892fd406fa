"""Three ledger nodes (real `orchestrator serve --etcd` servers) ordered by three etcd members on
loopback: the same log, root and state digest everywhere, whichever node took each write; an exact
resend through another node is ordered once; nodes and etcd members killed under load.

One cluster for the module; each test leaves it whole for the next (they run in file order)."""

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import KEYS, Server, free_port, new_uuid, orchestrator, report
from etcd_cluster import Etcd

from ledger.entry import SignedRequest, decode
from ledger.merkle import leaf_hash
from orchestrator import etcd_members
from orchestrator.client import ClientError

NODES = 3
#: etcd revisions kept for a node that is down (small, so that a test can write past it).
RETAIN = 3000
_NO = SignedRequest("", "", {}, b"")


@dataclass
class Cluster:
    etcd: Etcd
    servers: list[Server]

    def client(self, i: int, name: str = "everything") -> Any:
        return self.servers[i].client(name)

    def heads(self) -> list[tuple[int, str, str]]:
        """(size, state digest, root) of every node."""
        found = []
        for i in range(len(self.servers)):
            head = self.client(i).head()
            root = self.client(i).checkpoint().split("\n")[2]
            found.append((head["size"], head["state_digest"], root))
        return found

    def level(self, timeout_s: float = 60) -> tuple[int, str, str]:
        """Wait until every node reports the same head and checkpoint root; that head."""
        deadline = time.monotonic() + timeout_s
        heads: list[tuple[int, str, str]] = []
        while time.monotonic() < deadline:
            heads = self.heads()
            if len(set(heads)) == 1 and heads[0][2]:
                return heads[0]
            time.sleep(0.2)
        raise AssertionError(f"the nodes did not reach the same head: {heads}")

    def reached(self, i: int, seq: int, timeout_s: float = 30) -> None:
        """Wait until node i has applied entry seq (read-your-writes across nodes)."""
        deadline = time.monotonic() + timeout_s
        while self.client(i).head()["size"] <= seq:
            assert time.monotonic() < deadline, f"node {i} did not reach entry {seq}"
            time.sleep(0.02)

    def entries(self, i: int, size: int) -> list[bytes]:
        import base64

        raws: list[bytes] = []
        while len(raws) < size:
            page = self.client(i).entries(len(raws), size)
            raws += [base64.b64decode(e["raw"]) for e in page["entries"]]
        return raws


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    etcd = Etcd(etcd_members.plan(3, base / "etcd"))
    ports = [free_port() for _ in range(NODES)]
    urls = ",".join(f"http://127.0.0.1:{port}" for port in ports)
    names = [f"n{i + 1}" for i in range(NODES)]
    first = base / names[0]
    args = ["init", "--data-dir", str(first)]
    for name, roles in KEYS.items():
        args += ["--key", f"{name}={roles}"]
    orchestrator(*args, *[a for name in names for a in ("--node", name)])
    for name in names[1:]:
        orchestrator("init", "--join", str(first / "genesis.json"), "--node-key", str(first / "nodes" / f"{name}.pem"),
                     "--data-dir", str(base / name))
        shutil.copytree(first / "keys", base / name / "keys")  # client keys, for the tests' clients
    servers = [Server(base / name, port, args=("--etcd", ",".join(etcd.urls), "--public-url", urls,
                                                     "--etcd-retain", str(RETAIN)))
               for name, port in zip(names, ports, strict=True)]
    try:
        etcd.start_all()
        for server in servers:
            server.start()
        yield Cluster(etcd, servers)
    finally:
        for server in servers:
            server.stop()
        etcd.stop_all()


def _etcdctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([etcd_members.ETCDCTL, "--endpoints", ",".join(cluster.etcd.urls), *args],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"},
                          check=False)


def _records(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The nodes' records in etcd (ledger.applied), by node name."""
    done = _etcdctl(cluster, "get", "--prefix", "/orchestrator/", "-w", "json")
    found = {}
    for kv in json.loads(done.stdout).get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        if "/n/" in key:
            found[key.rsplit("/", 1)[1]] = json.loads(base64.b64decode(kv["value"]))
    return found


def _proposal_keys(cluster: Cluster) -> int:
    done = _etcdctl(cluster, "get", "--prefix", "/orchestrator/", "--keys-only", "-w", "json")
    return sum(1 for kv in json.loads(done.stdout).get("kvs", []) if "/p/" in base64.b64decode(kv["key"]).decode())


def _compacted_past(cluster: Cluster, revision: int) -> bool:
    done = _etcdctl(cluster, "get", "/orchestrator/none", f"--rev={max(revision, 1)}")
    return "compacted" in done.stderr


def _problem() -> dict[str, Any]:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


@dataclass
class Load:
    """Clients writing problems to random nodes until stopped (bounded: at most `limit_s`)."""

    cluster: Cluster
    clients: int = 16
    limit_s: float = 30.0
    acked: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, leaf hash, uuid)
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, seed: int) -> None:
        chooser = random.Random(seed)
        clients = [self.cluster.client(i, "admin") for i in range(len(self.cluster.servers))]
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            body = _problem()
            try:
                response = chooser.choice(clients).post("/problem", body)
            except requests.RequestException as e:  # a node being killed
                self.refused.append(repr(e))
                time.sleep(0.05)
                continue
            if response.status_code == 201:
                receipt = response.json()["receipt"]
                self.acked.append((receipt["seq"], receipt["hash"], body["uuid"]))
            else:
                self.refused.append(f"{response.status_code} {response.text}")
                time.sleep(0.05)

    def __enter__(self) -> "Load":
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_acked(self, count: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} writes acknowledged: {self.refused[-3:]}"
            time.sleep(0.05)


def _check_all_acknowledged(cluster: Cluster, acked: list[tuple[int, str, str]]) -> tuple[int, str, str]:
    """Every node: the same head; each acknowledged write at its seq with its hash, once."""
    head = cluster.level()
    seqs = [seq for seq, _, _ in acked]
    assert len(set(seqs)) == len(seqs), "two acknowledged writes share a sequence number"
    logs = [cluster.entries(i, head[0]) for i in range(len(cluster.servers))]
    assert all(log == logs[0] for log in logs), "the nodes hold different logs"
    leaves = [leaf_hash(raw).hex() for raw in logs[0]]
    assert len(set(leaves)) == len(leaves), "an entry appears twice"
    for seq, leaf, _ in acked:
        assert leaves[seq] == leaf, f"acknowledged entry {seq} is not in the log as acknowledged"
    return head


def test_clients_writing_to_random_nodes_leave_every_node_with_the_same_ledger(cluster: Cluster) -> None:
    started = time.monotonic()
    with Load(cluster, clients=16, limit_s=6) as load:
        time.sleep(6)
    elapsed = time.monotonic() - started
    assert load.acked and not load.refused, load.refused[:3]
    head = _check_all_acknowledged(cluster, load.acked)
    report("cluster", writes=len(load.acked), writes_per_s=round(len(load.acked) / elapsed), size=head[0])


def test_the_same_signed_write_sent_to_two_nodes_at_once_is_one_entry_with_one_answer(cluster: Cluster) -> None:
    admin = cluster.client(0, "admin")
    first, second = cluster.servers[0], cluster.servers[1]
    prepared = requests.Request("POST", first.url + "/problem", json=_problem(), auth=admin.auth()).prepare()
    copy = prepared.copy()
    copy.url = second.url + "/problem"
    copy.headers["Host"] = f"127.0.0.1:{first.port}"  # the authority it was signed for, which every node answers to
    answers: list[requests.Response] = []

    def send(request: requests.PreparedRequest) -> None:
        with requests.Session() as session:
            answers.append(session.send(request, timeout=30))

    threads = [threading.Thread(target=send, args=(r,)) for r in (prepared, copy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert answers[0].content == answers[1].content  # byte-identical, receipt included
    seq = answers[0].json()["receipt"]["seq"]
    size, _, _ = cluster.level()
    raws = cluster.entries(0, size)
    signature = prepared.headers["Signature"]
    assert sum(1 for raw in raws[1:] if (decode(raw).request or _NO).headers.get("signature") == signature) == 1
    assert leaf_hash(raws[seq]).hex() == answers[0].json()["receipt"]["hash"]


def test_a_write_resent_to_a_node_that_applied_it_already_gets_the_first_answer(cluster: Cluster) -> None:
    admin = cluster.client(0, "admin")
    first, second = cluster.servers[0], cluster.servers[1]
    prepared = requests.Request("POST", first.url + "/problem", json=_problem(), auth=admin.auth()).prepare()
    copy = prepared.copy()
    copy.url = second.url + "/problem"
    copy.headers["Host"] = f"127.0.0.1:{first.port}"
    with requests.Session() as session:
        answer = session.send(prepared, timeout=30)
    assert answer.status_code == 201, answer.text
    cluster.reached(1, answer.json()["receipt"]["seq"])  # the other node applied it before the resend came
    with requests.Session() as session:
        again = session.send(copy, timeout=30)
    assert again.status_code == 201, again.text
    assert again.content == answer.content
    size, _, _ = cluster.level()
    signature = prepared.headers["Signature"]
    raws = cluster.entries(0, size)
    assert sum(1 for raw in raws[1:] if (decode(raw).request or _NO).headers.get("signature") == signature) == 1


def test_the_platform_cycle_with_each_step_on_another_node(cluster: Cluster) -> None:
    step = iter(range(1000))

    def node() -> int:
        return next(step) % NODES

    def on(name: str, i: int, after: int | None = None) -> Any:
        if after is not None:
            cluster.reached(i, after)  # this node has applied the write it reads about
        return cluster.client(i, name)

    problem, workflow, test_data = new_uuid(), new_uuid(), new_uuid()
    train = [new_uuid(), new_uuid()]
    seq = on("admin", node()).add_problem(problem, workflow, [test_data], 2)["receipt"]["seq"]
    seq = on("viewer", node(), seq).add_data(train + [test_data], problem)["receipt"]["seq"]
    algo = new_uuid()
    answer = on("analytics", node(), seq).add_algo(algo, "logreg", problem)
    assert answer["new_learnuplets"] == 1
    i = node()
    learnuplet = next(on("viewer", i, answer["receipt"]["seq"]).find_all("learnuplet", algo=algo))
    assert learnuplet["status"] == "todo"
    worker = new_uuid()
    claim = on("compute", node(), answer["receipt"]["seq"]).set_worker("learnuplet", learnuplet["uuid"], worker)
    seq = claim["receipt"]["seq"]
    done = on("compute", node(), seq).learn_done(learnuplet["uuid"], "done", perf=0.9, train_perf=[0.95, 0.93],
                                                 test_perf=[0.9])
    i = node()
    assert on("viewer", i, done["receipt"]["seq"]).document("learnuplet", learnuplet["uuid"])["status"] == "done"
    new_data = new_uuid()
    seq = on("viewer", node(), done["receipt"]["seq"]).add_data(new_data, problem)["receipt"]["seq"]
    prediction = on("viewer", node(), seq).request_prediction([new_data], problem)
    assert prediction["new_preduplets"] == 1
    preduplet = next(on("viewer", node(), prediction["receipt"]["seq"]).find_all("preduplet", data=new_data))
    assert preduplet["model"] == on("viewer", node()).document("learnuplet", learnuplet["uuid"])["model_end"]
    claim = on("compute", node(), prediction["receipt"]["seq"]).set_worker("preduplet", preduplet["uuid"], worker)
    seq = claim["receipt"]["seq"]
    seq = on("compute", node(), seq).pred_done(preduplet["uuid"], "done", new_uuid())["receipt"]["seq"]
    for i in range(NODES):
        assert on("viewer", i, seq).document("preduplet", preduplet["uuid"])["status"] == "done"
    # A claimed uplet cannot be claimed again, whichever node is asked.
    with pytest.raises(ClientError) as refused:
        on("compute2", node(), seq).set_worker("preduplet", preduplet["uuid"], worker)
    assert refused.value.status == 409
    cluster.level()


def test_a_ledger_node_killed_under_load_catches_up_to_the_same_digest(cluster: Cluster) -> None:
    victim = cluster.servers[2]
    with Load(cluster, clients=8, limit_s=30) as load:
        load.wait_acked(100)
        victim.stop(signal.SIGKILL)
        at_kill = len(load.acked)
        load.wait_acked(at_kill + 100)  # the others go on
        victim.start()
        load.wait_acked(len(load.acked) + 100)
    head = _check_all_acknowledged(cluster, load.acked)
    report("cluster", killed_node_caught_up_to=head[0], acked=len(load.acked), refused=len(load.refused))


def test_the_etcd_leader_killed_under_load_pauses_writes_and_loses_nothing(cluster: Cluster) -> None:
    with Load(cluster, clients=8, limit_s=40) as load:
        load.wait_acked(100)
        leader = cluster.etcd.leader()
        cluster.etcd.kill(leader, signal.SIGKILL)
        killed_at, count = time.monotonic(), len(load.acked)
        load.wait_acked(count + 100, timeout_s=30)  # writes continue
        resumed_s = time.monotonic() - killed_at
        cluster.etcd.start(leader)
        etcd_members.wait_healthy(cluster.etcd.members)
        load.wait_acked(len(load.acked) + 50, timeout_s=30)
    _check_all_acknowledged(cluster, load.acked)
    report("cluster", etcd_leader_killed_100_more_writes_within_s=round(resumed_s, 2), refused=len(load.refused))


def test_losing_etcd_refuses_writes_with_503_and_reads_go_on(cluster: Cluster) -> None:
    admin = cluster.client(1, "admin")
    problem = _problem()
    assert admin.post("/problem", problem).status_code == 201
    cluster.etcd.stop_all()
    try:
        answer = admin.post("/problem", _problem())
        assert answer.status_code == 503 and "etcd" in answer.json()["description"], answer.text
        ready = requests.get(cluster.servers[1].url + "/readyz", timeout=10)
        assert ready.status_code == 503 and "etcd" in ready.json()["description"], ready.text
        assert admin.get(f"/problem/{problem['uuid']}").status_code == 200  # reads go on
    finally:
        cluster.etcd.start_all()
    deadline = time.monotonic() + 30
    while requests.get(cluster.servers[1].url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the node did not become ready again"
        time.sleep(0.2)
    assert admin.post("/problem", _problem()).status_code == 201
    cluster.level()


def test_a_node_left_behind_by_etcd_compaction_catches_up_from_a_peer_then_applies_new_writes(
    cluster: Cluster,
) -> None:
    victim = cluster.servers[2]
    assert cluster.client(0, "admin").post("/problem", _problem()).status_code == 201
    cluster.level()
    time.sleep(1.5)  # its record in etcd names the head it reached
    victim.stop(signal.SIGKILL)
    left_at = int(_records(cluster)["n3"]["position"][:16], 16)  # the etcd revision it had applied
    with Load(cluster, clients=16, limit_s=120) as load:
        deadline = time.monotonic() + 110
        while not _compacted_past(cluster, left_at + 1):
            assert time.monotonic() < deadline, f"etcd was not compacted past revision {left_at}"
            time.sleep(0.5)
        load.wait_acked(len(load.acked) + 200)
    answered = [r for r in load.refused if not r.startswith("ConnectionError")]  # not the stopped node's
    assert not answered, answered[:3]
    started = time.monotonic()
    victim.start()  # etcd no longer holds what it missed: it must take it from a peer
    size, _, _ = cluster.level(timeout_s=120)
    caught_up_s = time.monotonic() - started
    log = (victim.data_dir.parent / f"server-{victim.port}.log").read_text()
    assert "caught up from a peer" in log
    with Load(cluster, clients=4, limit_s=30) as more:  # and then it applies new writes as the others do
        more.wait_acked(50)
        assert victim.client("admin").post("/problem", _problem()).status_code == 201
    _check_all_acknowledged(cluster, load.acked + more.acked)
    report("cluster", caught_up_from_peer_s=round(caught_up_s, 2), caught_up_to=size)


def test_etcd_stays_small_under_continued_writes(cluster: Cluster) -> None:
    cluster.level()
    with Load(cluster, clients=16, limit_s=60) as load:
        load.wait_acked(1000, timeout_s=60)
    cluster.level()
    time.sleep(8)  # the nodes report where they are, then a compaction round
    keys = _proposal_keys(cluster)  # what every node has applied is gone
    assert keys < 100, f"{keys} proposals still in etcd after {len(load.acked)} writes"
    report("cluster", etcd_proposal_keys_after=keys, writes=len(load.acked))


def test_each_node_checkpoint_carries_every_node_signature_over_the_same_root(cluster: Cluster) -> None:
    size, _, root = cluster.level()
    deadline = time.monotonic() + 20
    while True:
        notes = [cluster.client(i).checkpoint() for i in range(NODES)]
        lines = [n.split("\n\n", 1)[1].strip().split("\n") for n in notes]
        if all(len(found) == NODES for found in lines):
            break
        assert time.monotonic() < deadline, f"checkpoints do not carry {NODES} signatures: {notes}"
        time.sleep(0.3)
    assert len({n.split("\n\n")[0] for n in notes}) == 1 and root in notes[0]
    assert all(set(found) == set(lines[0]) for found in lines)  # the same signature lines everywhere
    for server in cluster.servers:
        done = orchestrator("audit", "--url", server.url, "--data-dir", str(server.data_dir),
                            "--key-id", "auditor", "--all-nodes", check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        assert f"tree size {size}," in done.stdout


def test_verify_passes_on_every_node_data_dir_with_the_same_root_and_digest(cluster: Cluster) -> None:
    size, digest, root = cluster.level()
    for server in cluster.servers:
        server.stop()
    summaries = []
    for server in cluster.servers:
        done = orchestrator("verify", "--data-dir", str(server.data_dir), check=False)
        assert done.returncode == 0, done.stderr
        summaries.append(done.stdout)
    for summary in summaries:
        assert f"tree size {size}," in summary and f"root {root}," in summary and digest in summary
    for server in cluster.servers:
        server.start()  # leave the cluster whole
    assert Path(cluster.servers[0].data_dir / "genesis.json").exists()
