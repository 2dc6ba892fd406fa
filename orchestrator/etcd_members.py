"""Running etcd members on loopback (Debian's ``etcd``, 3.4): for ``orchestrator cluster up`` and
the tests. Each member has a data dir, a client port and a peer port; nothing listens beyond
127.0.0.1. Stopping a member is a signal to its own process id, never a search by name.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ETCD = "etcd"
ETCDCTL = "etcdctl"


class EtcdMissing(RuntimeError):
    """etcd is not installed (``apt-get install etcd-server etcd-client``)."""


@dataclass(frozen=True)
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def free_ports(count: int) -> list[int]:
    """Ports that were free on 127.0.0.1 a moment ago (held together, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def plan(count: int, base: Path, prefix: str = "etcd") -> list[Member]:
    ports = free_ports(2 * count)
    return [Member(f"{prefix}{i + 1}", ports[2 * i], ports[2 * i + 1], base / f"{prefix}{i + 1}") for i in range(count)]


def initial_cluster(members: list[Member]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def start(
    member: Member, members: list[Member], *, token: str, log_path: Path | None = None
) -> "subprocess.Popen[bytes]":
    """Start one member of `members` (a new cluster the first time its data dir is used, the
    same cluster after). Raises EtcdMissing."""
    if shutil.which(ETCD) is None:
        raise EtcdMissing("etcd is not installed: apt-get install etcd-server etcd-client")
    state = "existing" if (member.data_dir / "member").exists() else "new"
    member.data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
        "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", initial_cluster(members), "--initial-cluster-token", token,
        "--initial-cluster-state", state, "--log-level", "warn", "--logger", "zap",
        # Elections within a second or two on a busy loopback machine.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        "--max-request-bytes", str(8 * 1024 * 1024),
    ]
    out = open(log_path if log_path is not None else os.devnull, "ab")  # noqa: SIM115 (handed to the child)
    try:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()


def status(member: Member, timeout_s: float = 2.0) -> dict[str, object] | None:
    """etcdctl's endpoint status of one member (None when it does not answer)."""
    try:
        done = subprocess.run(
            [ETCDCTL, "--endpoints", member.client_url, "--command-timeout", f"{timeout_s}s",
             "endpoint", "status", "-w", "json"],
            capture_output=True, timeout=timeout_s + 3, env={**os.environ, "ETCDCTL_API": "3"}, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return None
    if not isinstance(answer, list) or not answer:
        return None
    found = answer[0].get("Status")
    return found if isinstance(found, dict) else None


def is_leader(member: Member) -> bool:
    found = status(member)
    if found is None:
        return False
    header = found.get("header")
    return isinstance(header, dict) and found.get("leader") == header.get("member_id")


def wait_healthy(members: list[Member], timeout_s: float = 30.0) -> None:
    """Until every member answers and one of them leads; raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [status(m) for m in members]
        if all(f is not None for f in found) and any(is_leader(m) for m in members):
            return
        time.sleep(0.2)
    raise TimeoutError(f"etcd members {', '.join(m.client_url for m in members)} did not become healthy")


def stop(process: "subprocess.Popen[bytes]", sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Signal one member's own process and wait for it (SIGKILL if it does not go)."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
