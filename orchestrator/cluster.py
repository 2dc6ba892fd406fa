"""`orchestrator cluster up | down`: several ledger nodes and the etcd members that order them,
on loopback, for trying the several-node ledger on one machine.

``up --nodes N --dir D`` makes, the first time, one ledger with N node keys (``D/node1`` by
``init --node node1 ... --node nodeN``, the others by ``init --join``) and N etcd members
(``D/etcd/etcdI``), on free loopback ports it then keeps in ``D/cluster.json``; it starts the
members, then one ``orchestrator serve --etcd ...`` per node, each answering to every node's
URL (so a request signed for one node is accepted by any), and prints the nodes' URLs. Later
``up`` runs start the same cluster again on the same ports. ``down --dir D`` stops the nodes,
then the members, by the process ids ``up`` recorded (each checked to still be the process
started for that directory), and leaves the data in place.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from orchestrator import etcd_members

STATE_FILE = "cluster.json"


class ClusterError(Exception):
    """Trouble a cluster command reports in one line."""


@dataclass
class Layout:
    nodes: int
    http_ports: list[int]
    etcd_ports: list[list[int]]  # [client, peer] per member
    token: str
    pids: dict[str, int] = field(default_factory=dict)  # "node1", "etcd1", ... -> process id

    def members(self, base: Path) -> list[etcd_members.Member]:
        return [etcd_members.Member(f"etcd{i + 1}", client, peer, base / "etcd" / f"etcd{i + 1}")
                for i, (client, peer) in enumerate(self.etcd_ports)]

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.http_ports]


def _load(base: Path) -> Layout | None:
    path = base / STATE_FILE
    if not path.exists():
        return None
    try:
        return Layout(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise ClusterError(f"{path} is not a cluster description: {e}") from e


def _save(base: Path, layout: Layout) -> None:
    path = base / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(layout), indent=2) + "\n")
    os.replace(temporary, path)


def _alive(pid: int, base: Path) -> bool:
    """The process is running and was started for this directory (its command line names it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(base).encode() in cmdline


def _orchestrator(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterError(f"orchestrator {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


def _create(base: Path, nodes: int) -> Layout:
    ports = etcd_members.free_ports(3 * nodes)
    layout = Layout(nodes, ports[:nodes], [[ports[nodes + 2 * i], ports[nodes + 2 * i + 1]] for i in range(nodes)],
                    uuid.uuid4().hex)
    names = [f"node{i + 1}" for i in range(nodes)]
    first = base / names[0]
    _orchestrator("init", "--data-dir", str(first), *[arg for name in names for arg in ("--node", name)])
    for name in names[1:]:
        _orchestrator("init", "--join", str(first / "genesis.json"), "--node-key", str(first / "nodes" / f"{name}.pem"),
                      "--data-dir", str(base / name))
    _save(base, layout)
    return layout


def up(base: Path, nodes: int) -> list[str]:
    """Start the cluster in base (making it the first time); the nodes' URLs."""
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    layout = _load(base)
    if layout is None:
        if nodes < 1:
            raise ClusterError("--nodes must be at least 1")
        layout = _create(base, nodes)
    elif layout.nodes != nodes:
        raise ClusterError(f"{base} holds a cluster of {layout.nodes} nodes, not {nodes}")
    running = [name for name, pid in layout.pids.items() if _alive(pid, base)]
    if running:
        raise ClusterError(f"{base}: {', '.join(sorted(running))} already running; `orchestrator cluster down` first")
    layout.pids = {}
    members = layout.members(base)
    try:
        for member in members:
            process = etcd_members.start(member, members, token=layout.token,
                                         log_path=base / "etcd" / f"{member.name}.log")
            layout.pids[member.name] = process.pid
        _save(base, layout)
        etcd_members.wait_healthy(members)
        etcd = ",".join(m.client_url for m in members)
        public = ",".join(layout.urls())
        for i, port in enumerate(layout.http_ports):
            name = f"node{i + 1}"
            with open(base / f"{name}.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "orchestrator", "serve", "--data-dir", str(base / name),
                     "--bind", f"127.0.0.1:{port}", "--etcd", etcd, "--public-url", public],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            layout.pids[name] = process.pid
            _save(base, layout)
        for i, url in enumerate(layout.urls()):
            _wait_ready(url, base / f"node{i + 1}.log")
    except BaseException:
        down(base)
        raise
    return layout.urls()


def _wait_ready(url: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ClusterError(f"{url} did not become ready in {timeout_s:g} s; see {log}")


def down(base: Path) -> list[str]:
    """Stop what up started in base (nodes first, then etcd members); the names stopped."""
    base = base.resolve()
    layout = _load(base)
    if layout is None:
        raise ClusterError(f"{base} holds no cluster ({STATE_FILE} is missing)")
    stopped = []
    order = sorted(layout.pids, key=lambda name: (name.startswith("etcd"), name))
    for name in order:
        pid = layout.pids[name]
        if _alive(pid, base):
            try:
                os.killpg(pid, signal.SIGTERM)  # its own session: the node's gunicorn worker too
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + 30
    for name in order:
        while _alive(layout.pids[name], base) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(layout.pids[name], base):
            os.killpg(layout.pids[name], signal.SIGKILL)
    layout.pids = {}
    _save(base, layout)
    return stopped
