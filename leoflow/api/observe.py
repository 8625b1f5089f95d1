"""Metrics and tracing for leoflow-server.

Metrics (prometheus-client): under gunicorn every worker is a separate process, so when
``PROMETHEUS_MULTIPROC_DIR`` is set (``leoflow-server`` sets it to a fresh private directory
before forking) values are kept in per-process files and ``/metrics`` aggregates them with the
``MultiProcessCollector``; without it (tests, single process) the default registry is used.
Routes are labelled by their URI template (``/api/v2/dags/{dag_id}``), never by raw path, so label
cardinality stays bounded.

Tracing (OpenTelemetry) is off by default. When ``[server] tracing_enabled`` is set, each request
gets a server span and each store call a child span; spans are exported over OTLP/HTTP when
``[server] otlp_endpoint`` is set. The provider is private to the app (not the global one), so
tests can inject an in-memory exporter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import falcon
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from leoflow.config import Config
from leoflow.store.port import Behavior, Entry, Op, Store, TxnResult, WatchResult

REQUESTS = Counter(
    "leoflow_api_requests_total", "HTTP requests served, by method, route template and status code",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "leoflow_api_request_duration_seconds", "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STORE_LATENCY = Histogram(
    "leoflow_api_store_call_duration_seconds", "Latency of state-store calls made by the API server, by operation",
    ["op"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
AUTH_FAILURES = Counter(
    "leoflow_api_auth_failures_total",
    "Rejected authentications: missing/expired/invalid token, bad credentials, rate limited, forbidden role",
    ["reason"],
)
WEBHOOK_EVENTS = Counter(
    "leoflow_api_webhook_events_total", "Git webhook deliveries by provider and outcome",
    ["provider", "outcome"],
)


def metrics_payload() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class MetricsResource:
    """``GET /metrics``: Prometheus text exposition (public, like every scrape endpoint behind a
    network policy; it carries no secrets, only counts by route)."""

    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = metrics_payload()


# ---------------------------------------------------------------- tracing


def build_tracer(config: Config, exporter: SpanExporter | None = None) -> tuple[trace.Tracer, TracerProvider | None]:
    """A tracer for the app: a no-op one unless tracing is enabled (or an exporter is injected)."""
    if not config.server.tracing_enabled and exporter is None:
        return trace.NoOpTracer(), None
    provider = TracerProvider(resource=Resource.create({"service.name": "leoflow-server"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif config.server.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.server.otlp_endpoint)))
    return provider.get_tracer("leoflow.api"), provider


# ---------------------------------------------------------------- instrumented store


class InstrumentedStore:
    """A Store that times every call (histogram by op) and opens a span per call when tracing.

    It wraps the real adapter (decorator, not a fake): same contract, same results, same errors.
    """

    def __init__(self, inner: Store, tracer: trace.Tracer) -> None:
        self.inner = inner
        self._tracer = tracer
        self._tracing = not isinstance(tracer, trace.NoOpTracer)

    @contextmanager
    def _observe(self, op: str, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            if self._tracing:
                with self._tracer.start_as_current_span(f"store.{op}", attributes={"leoflow.store.key": key}):
                    yield
            else:
                yield
        finally:
            STORE_LATENCY.labels(op).observe(time.perf_counter() - start)

    def get(self, key: str) -> Entry | None:
        with self._observe("get", key):
            return self.inner.get(key)

    def list(self, prefix: str) -> list[Entry]:
        with self._observe("list", prefix):
            return self.inner.list(prefix)

    def keys(self, prefix: str, separator: str | None = "/") -> list[str]:
        with self._observe("keys", prefix):
            return self.inner.keys(prefix, separator)

    def put(self, key: str, value: bytes, *, cas: int | None = None, flags: int = 0, acquire: str | None = None,
            release: str | None = None) -> bool:
        with self._observe("put", key):
            return self.inner.put(key, value, cas=cas, flags=flags, acquire=acquire, release=release)

    def delete(self, key: str, *, cas: int | None = None, recurse: bool = False) -> bool:
        with self._observe("delete", key):
            return self.inner.delete(key, cas=cas, recurse=recurse)

    def txn(self, ops: Sequence[Op]) -> TxnResult:
        with self._observe("txn", f"{len(ops)} ops"):
            return self.inner.txn(ops)

    def watch(self, key: str, *, index: int, wait: float, recurse: bool = False) -> WatchResult:
        with self._observe("watch", key):
            return self.inner.watch(key, index=index, wait=wait, recurse=recurse)

    def session_create(self, *, name: str, ttl: float, behavior: Behavior = "release",
                       lock_delay: float = 15.0) -> str:
        with self._observe("session_create", name):
            return self.inner.session_create(name=name, ttl=ttl, behavior=behavior, lock_delay=lock_delay)

    def session_renew(self, session: str) -> bool:
        with self._observe("session_renew", ""):
            return self.inner.session_renew(session)

    def session_destroy(self, session: str) -> None:
        with self._observe("session_destroy", ""):
            self.inner.session_destroy(session)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Adapter-specific extras (e.g. SQLite's path) stay reachable.
        return getattr(self.inner, name)
