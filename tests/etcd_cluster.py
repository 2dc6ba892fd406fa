"""etcd members on free loopback ports for the several-node tests: started by the test, stopped
after it (by their own process ids). etcd must be installed (.ci/run installs it): without it
these tests fail, they are not skipped."""

import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator import etcd_members


@dataclass
class Etcd:
    members: list[etcd_members.Member]
    processes: dict[str, "subprocess.Popen[bytes]"] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, member: etcd_members.Member) -> None:
        self.processes[member.name] = etcd_members.start(member, self.members, token=self.token,
                                                         log_path=member.data_dir.parent / f"{member.name}.log")

    def start_all(self) -> "Etcd":
        for member in self.members:
            self.start(member)
        etcd_members.wait_healthy(self.members)
        return self

    def kill(self, member: etcd_members.Member, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(member.name, None)
        if process is not None:
            etcd_members.stop(process, sig)

    def leader(self) -> etcd_members.Member:
        for member in self.members:
            if member.name in self.processes and etcd_members.is_leader(member):
                return member
        raise AssertionError("no etcd member leads")

    def stop_all(self) -> None:
        for member in self.members:
            self.kill(member, signal.SIGTERM)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """Three etcd members on loopback, for one test."""
    cluster = Etcd(etcd_members.plan(3, tmp_path / "etcd"))
    try:
        yield cluster.start_all()
    finally:
        cluster.stop_all()
