"""The scheduler's Prometheus metrics, on a registry of their own.

One registry per ``SchedulerMetrics`` (not the global default) so a test can run several
schedulers in one process and read each one's figures, and so ``/metrics`` shows exactly what
this process declares. Every metric here is emitted by the loop and asserted in
``tests/scheduler/test_loop.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Forward(Collector):
    """Exposes another registry's samples through a combined registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return iter(self.source.collect())


class SchedulerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.wakeups = Counter("leoflow_scheduler_wakeups", "Scheduler wake-ups by what woke it.", ["reason"],
                               registry=r)
        self.wakeup_seconds = Histogram("leoflow_scheduler_wakeup_duration_seconds",
                                        "Time to decide and write one wake-up's decisions.",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("leoflow_scheduler_decisions", "Decisions written, by kind.", ["kind"], registry=r)
        self.runs = Gauge("leoflow_scheduler_runs", "Active DAG runs by state.", ["state"], registry=r)
        self.task_instances = Gauge("leoflow_scheduler_task_instances",
                                    "Task instances of active runs by state ('none' for no state).", ["state"],
                                    registry=r)
        self.queue_depth = Gauge("leoflow_scheduler_pool_queue_depth",
                                 "Scheduled task instances waiting for a slot, per pool.", ["pool"], registry=r)
        self.dispatch_seconds = Histogram("leoflow_scheduler_dispatch_latency_seconds",
                                          "From a task instance being scheduled to its try handed to the executor.",
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.dispatch_failures = Counter("leoflow_scheduler_dispatch_failures",
                                         "Submits the executor refused; retried without spending a try.",
                                         registry=r)
        self.is_leader = Gauge("leoflow_scheduler_is_leader", "1 while this process is the leader.", registry=r)
        self.store_errors = Counter("leoflow_scheduler_store_errors", "Store failures, by operation.", ["op"],
                                    registry=r)
        self.run_errors = Counter("leoflow_scheduler_run_errors",
                                  "Runs whose planning raised (isolated; other runs continue).", registry=r)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample; KeyError when it was never emitted (tests rely on that)."""
        value = self.registry.get_sample_value(name, labels or {})
        if value is None:
            raise KeyError(f"metric sample {name}{labels or ''} was never emitted")
        return value

    def serve(self, bind: str, extra: Iterable[CollectorRegistry] = ()) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0 picks one); returns the bound port.

        ``extra`` registries (the executor's own metrics) are served on the same endpoint, so an
        operator scrapes one target per scheduler.
        """
        host, _, port = bind.rpartition(":")
        registry = self.registry
        if extra:
            registry = CollectorRegistry()
            for source in (self.registry, *extra):
                registry.register(_Forward(source))
        server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
        self._server, self._thread = server, thread
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
