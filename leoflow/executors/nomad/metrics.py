"""The Nomad executor's Prometheus metrics, on a registry of its own (one per executor, like the
scheduler's), so tests can read one executor's figures and ``/metrics`` shows what it declares.
Every metric here is emitted by the executor and asserted in ``tests/nomad/test_executor.py``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class NomadMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.submits = Counter("leoflow_nomad_submits", "Tries submitted as Nomad jobs, by result "
                               "(created, existing: an idempotent resubmit, rejected: the job spec was refused, "
                               "secrets_refused: a declared secret Nomad cannot deliver failed the try, "
                               "secrets_pending: held back while Vault cannot answer).",
                               ["result"], registry=r)
        self.submit_seconds = Histogram("leoflow_nomad_submit_seconds",
                                        "From submit() to the job registered in Nomad.", buckets=_BUCKETS, registry=r)
        self.finished = Counter("leoflow_nomad_tries_finished", "Terminal outcomes reported, by outcome.",
                                ["outcome"], registry=r)
        self.reconnects = Counter("leoflow_nomad_watch_reconnects",
                                  "Times the allocation watch reconnected, by mode (events, blocking).", ["mode"],
                                  registry=r)
        self.resyncs = Counter("leoflow_nomad_resyncs", "Namespace-wide allocation reads made to catch events "
                               "Nomad's event buffer dropped.", registry=r)
        self.log_lines = Counter("leoflow_nomad_log_lines", "Task log lines copied from Nomad into the log store.",
                                 registry=r)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        if value is None:
            raise KeyError(f"metric sample {name}{labels or ''} was never emitted")
        return value
