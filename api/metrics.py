"""Prometheus metrics of one app, in a registry of its own (never the global one).

Labels are bounded: route templates (``/{collection}/{uuid}``, never a concrete path), methods,
statuses and short refusal reasons. No key id, uuid or body ever becomes a label.
"""

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from falcon.asgi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.offload import Offload

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Watched(Protocol):
    """What the gauges read at scrape time (a :class:`ledger.service.Ledger`)."""

    def head(self) -> tuple[int, bytes]: ...

    def state_lag(self) -> int: ...


class Waiting(Protocol):
    """What the waiting-request figures read at scrape time (an api.waits.Waits)."""

    @property
    def waiting(self) -> int: ...

    @property
    def looks(self) -> int: ...


class _WaitingCollector:
    """orchestrator_waiting_requests and orchestrator_wait_looks_total, read from the waits at each scrape."""

    def __init__(self, waits: Waiting) -> None:
        self.waits = waits

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "orchestrator_waiting_requests", "Requests waiting for the ledger to change (wait=S)",
            value=self.waits.waiting,
        )
        yield CounterMetricFamily(
            "orchestrator_wait_looks", "Queries run again for waiting requests, after batches that may answer them",
            value=self.waits.looks,
        )


class Metrics:
    """The app's instruments. ``on_group`` is the writer's hook (Ledger.open(on_group=...))."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "orchestrator_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "orchestrator_request_duration_seconds", "HTTP request latency by route template and method",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.group_size = Histogram(
            "orchestrator_commit_group_size", "Transactions appended to the log per commit (one fsync)",
            buckets=GROUP_BUCKETS, registry=r,
        )
        self.commit_seconds = Histogram(
            "orchestrator_commit_duration_seconds", "Time to append a commit group to the log and fsync it",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.signature_failures = Counter(
            "orchestrator_signature_failures", "Requests refused as unauthenticated (401), by reason",
            ["reason"], registry=r,
        )
        self.log_size = Gauge("orchestrator_log_entries", "Entries in the log (the tree size)", registry=r)
        self.state_lag = Gauge(
            "orchestrator_state_lag_entries", "Log entries not yet applied to the state store", registry=r
        )

        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._observed: deque[tuple[str, str, int, float]] = deque()
        self._moving = threading.Lock()

    def watch(self, ledger: Watched) -> None:
        """Read the log size and state lag from ``ledger`` at each scrape."""
        self.log_size.set_function(lambda: ledger.head()[0])
        self.state_lag.set_function(ledger.state_lag)

    def watch_witnesses(self, report: Callable[[], dict[str, Any] | None]) -> None:
        """Witness gauges and counters, read from ``report`` at each scrape (nothing without witnesses)."""
        self.registry.register(WitnessCollector(report))

    def watch_waits(self, waits: Waiting) -> None:
        """Read the waiting requests' figures from ``waits`` (an api.waits.Waits) at each scrape."""
        self.registry.register(_WaitingCollector(waits))

    def on_group(self, count: int, seconds: float) -> None:
        self.group_size.observe(count)
        self.commit_seconds.observe(seconds)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request. Request threads only queue it (an atomic append: prometheus_client's
        per-value locks, taken by 32 busy threads, made them wait on each other); whoever finds
        the queue long, or a scrape, moves the queue into the metrics."""
        self._observed.append((route, method, status, seconds))
        if len(self._observed) >= self.QUEUED and self._moving.acquire(blocking=False):
            try:
                self._move_observed()
            finally:
                self._moving.release()

    QUEUED = 256  # observations queued before a request thread moves them

    def _move_observed(self) -> None:
        # labels() parses and validates its arguments on every call; the label sets are few
        # (route templates x methods x statuses), so their children are looked up once.
        while self._observed:
            route, method, status, seconds = self._observed.popleft()
            children = self._children.get((route, method, status))
            if children is None:
                children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
                self._children[(route, method, status)] = children
            children[0].inc()
            children[1].observe(seconds)

    def signature_failure(self, reason: str) -> None:
        self.signature_failures.labels(reason).inc()

    def render(self) -> bytes:
        with self._moving:
            self._move_observed()
        return generate_latest(self.registry)


class WitnessCollector(Collector):
    """``orchestrator_witness_up{witness}`` (1 when it cosigned the last checkpoint sent),
    ``orchestrator_witness_cosigned_size{witness}``, ``orchestrator_witness_cosignatures_total{witness}``,
    ``orchestrator_witness_cpu_seconds_total{witness}``,
    ``orchestrator_witness_failures_total{witness, reason}`` (``down``, ``refused``) and
    ``orchestrator_witnessed_size``. The label is the witness's
    name from its configured vkey (a bounded set)."""

    def __init__(self, report: Callable[[], dict[str, Any] | None]) -> None:
        self.report = report

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected only at scrape time: the report may be None until witnesses attach

    def collect(self) -> Iterator[Metric]:
        report = self.report()
        if report is None:
            return
        up = GaugeMetricFamily("orchestrator_witness_up", "1 when the witness cosigned the last checkpoint sent",
                               labels=["witness"])
        size = GaugeMetricFamily("orchestrator_witness_cosigned_size",
                                 "Tree size of the latest checkpoint the witness cosigned", labels=["witness"])
        failures = CounterMetricFamily("orchestrator_witness_failures", "Witness calls that got no cosignature",
                                       labels=["witness", "reason"])
        cosigned = CounterMetricFamily("orchestrator_witness_cosignatures", "Witness calls that got a cosignature",
                                       labels=["witness"])
        cpu = CounterMetricFamily("orchestrator_witness_cpu_seconds",
                                  "CPU time of the witness's thread in its calls (proofs, requests, checks)",
                                  labels=["witness"])
        for status in report["witnesses"]:
            up.add_metric([status["name"]], 1.0 if status["state"] == "ok" else 0.0)
            if status["cosigned_size"] is not None:
                size.add_metric([status["name"]], float(status["cosigned_size"]))
            cosigned.add_metric([status["name"]], float(status["cosignatures"]))
            cpu.add_metric([status["name"]], float(status["cpu_seconds"]))
            for reason in ("down", "refused"):
                failures.add_metric([status["name"], reason], float(status["failures"].get(reason, 0)))
        witnessed = GaugeMetricFamily("orchestrator_witnessed_size",
                                      "Tree size of the newest checkpoint with a quorum of cosignatures")
        if report["witnessed_size"] is not None:
            witnessed.add_metric([], float(report["witnessed_size"]))
        yield from (up, size, failures, cosigned, cpu, witnessed)


class MetricsEndpoint:
    """GET /metrics: the Prometheus text format. Unauthenticated, like a health probe.

    Rendering reads every instrument (and the gauges read the ledger): it runs on the read pool.
    """

    def __init__(self, metrics: Metrics, offload: Offload) -> None:
        self.metrics = metrics
        self.offload = offload

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = await self.offload.run(self.metrics.render)
