"""The server's cross-cutting behaviour: problem details everywhere, request ids, access log,
metrics, tracing, discovery and health."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon
import pytest
from prometheus_client import REGISTRY

from leoflow.api import server
from leoflow.store.election import LeaderElector
from tests.api.conftest import ApiHarness
from tests.spec_validation import PROBLEM_SCHEMA, assert_spec


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _is_problem(result: Any, status: int) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    doc = json.loads(result.text)
    for key in PROBLEM_SCHEMA["required"]:
        assert key in doc, doc
    assert isinstance(doc["detail"], str) and doc["detail"]
    assert doc["status"] == status
    return doc


class Boom:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("database password=hunter2 leaked in a traceback")


def test_falcon_errors_are_problems(api: ApiHarness, client: Any) -> None:
    doc = _is_problem(client.simulate_get("/api/v2/no-such-thing"), 404)
    assert doc["instance"] == "/api/v2/no-such-thing"
    _is_problem(client.simulate_delete("/health/live"), 405)
    _is_problem(client.simulate_put("/api/v2/dags"), 405)
    doc = _is_problem(client.simulate_patch("/api/v2/dags/x", body="is_paused=1",
                                            headers={"Content-Type": "text/plain"}), 404)  # unknown DAG first
    api.seed_dag("x")
    doc = _is_problem(client.simulate_patch("/api/v2/dags/x", body="is_paused=1",
                                            headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in doc["detail"]


def test_oversized_body_is_413_before_reading(api: ApiHarness, client: Any) -> None:
    api.seed_dag("x")
    big = b'{"is_paused": true, "pad": "' + b"a" * (api.ctx.config.server.max_body_bytes + 10) + b'"}'
    doc = _is_problem(client.simulate_patch("/api/v2/dags/x", body=big,
                                            headers={"Content-Type": "application/json"}), 413)
    assert "limit" in doc["detail"]
    assert api.repos.dags.get("x").state.is_paused is False


def test_unhandled_error_shows_correlation_id_not_traceback(api: ApiHarness, client: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    api.app.add_route("/api/v2/test-boom", Boom())
    with caplog.at_level(logging.ERROR, logger="leoflow.api.problem"):
        result = client.simulate_get("/api/v2/test-boom", headers={"X-Request-ID": "req-123"})
    doc = _is_problem(result, 500)
    assert doc["correlation_id"] == "req-123" and "req-123" in doc["detail"]
    assert "hunter2" not in result.text and "Traceback" not in result.text
    record = next(r for r in caplog.records if r.getMessage() == "unhandled error")
    assert record.correlation_id == "req-123" and record.exc_info is not None


def test_request_id_kept_or_generated(api: ApiHarness, client: Any) -> None:
    assert client.simulate_get("/health/live", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"] == "abc-1"
    generated = client.simulate_get("/health/live", headers={"X-Request-ID": "bad id\nwith newline"})
    assert len(generated.headers["x-request-id"]) == 32


def test_structured_access_log(api: ApiHarness, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    api.seed_dag("etl")
    with caplog.at_level(logging.INFO, logger="leoflow.api.access"):
        client.simulate_get("/api/v2/dags/etl", headers={"X-Request-ID": "log-1"})
    rec = next(r for r in caplog.records if r.name == "leoflow.api.access" and r.request_id == "log-1")
    assert rec.route == "/api/v2/dags/{dag_id}" and rec.status == 200 and rec.user == "admin-user"
    assert rec.method == "GET" and rec.duration_ms >= 0
    from leoflow.observe.logging import JsonFormatter

    line = json.loads(JsonFormatter("leoflow-server").format(rec))
    assert line["route"] == "/api/v2/dags/{dag_id}" and line["request_id"] == "log-1"


def test_metrics_requests_latency_store_and_auth(api: ApiHarness, client: Any) -> None:
    api.seed_dag("etl")
    labels = {"method": "GET", "route": "/api/v2/dags/{dag_id}", "status": "200"}
    before = _sample("leoflow_api_requests_total", labels)
    route = {"method": "GET", "route": "/api/v2/dags/{dag_id}"}
    lat_before = _sample("leoflow_api_request_duration_seconds_count", route)
    store_before = _sample("leoflow_api_store_call_duration_seconds_count", {"op": "get"})
    fail_before = _sample("leoflow_api_auth_failures_total", {"reason": "missing"})
    client.simulate_get("/api/v2/dags/etl")
    client.simulate_get("/api/v2/dagSources/etl")  # the DAG entry is mirrored; the source is read from the store
    api.anon.simulate_get("/api/v2/dags")
    assert _sample("leoflow_api_requests_total", labels) == before + 1
    assert _sample("leoflow_api_request_duration_seconds_count",
                   {"method": "GET", "route": "/api/v2/dags/{dag_id}"}) == lat_before + 1
    assert _sample("leoflow_api_store_call_duration_seconds_count", {"op": "get"}) > store_before
    assert _sample("leoflow_api_auth_failures_total", {"reason": "missing"}) == fail_before + 1
    text = api.anon.simulate_get("/metrics").text
    assert 'leoflow_api_requests_total{method="GET",route="/api/v2/dags/{dag_id}",status="200"}' in text


def test_unmatched_routes_do_not_explode_label_cardinality(api: ApiHarness, client: Any) -> None:
    for i in range(3):
        client.simulate_get(f"/api/v2/random-{i}")
    text = api.anon.simulate_get("/metrics").text
    assert "random-1" not in text


def test_tracing_span_per_request_and_store_call(api: ApiHarness, client: Any) -> None:
    api.seed_dag("etl")
    api.spans.clear()
    # The source is read from the store (the DAG entry itself is mirrored in memory).
    client.simulate_get("/api/v2/dagSources/etl", headers={"X-Request-ID": "trace-1"})
    spans = api.spans.get_finished_spans()
    request = next(s for s in spans if s.name == "GET /api/v2/dagSources/{dag_id}")
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["leoflow.request_id"] == "trace-1"
    # (the run projection's background watch makes root store spans of its own: not this request's)
    store_spans = [s for s in spans if s.name.startswith("store.") and s.context.trace_id == request.context.trace_id]
    assert {s.name for s in store_spans} >= {"store.get"}
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in store_spans)


def test_tracing_off_by_default(tmp_path: Any) -> None:
    from opentelemetry import trace

    from leoflow.api.observe import build_tracer
    from leoflow.config import Config

    tracer, provider = build_tracer(Config())
    assert isinstance(tracer, trace.NoOpTracer) and provider is None
    config = Config()
    config.server.tracing_enabled = True
    config.server.otlp_endpoint = "http://127.0.0.1:9/v1/traces"
    tracer, provider = build_tracer(config)
    assert provider is not None and not isinstance(tracer, trace.NoOpTracer)
    provider.shutdown()


def test_discovery_finds_every_public_and_ui_module() -> None:
    names = {m.__name__ for m in server.discover()}
    assert {"leoflow.api.public.dags", "leoflow.api.public.tasks", "leoflow.api.public.event_logs"} <= names
    assert not any(n.rsplit(".", 1)[1].startswith("_") for n in names)


def test_health_endpoints_public_and_real(api: ApiHarness) -> None:
    anon = api.anon
    assert anon.simulate_get("/health/live").json == {"status": "ok"}
    assert anon.simulate_get("/health/ready").json["status"] == "ready"
    body = assert_spec(anon.simulate_get("/api/v2/monitor/health"), "GET", "/api/v2/monitor/health")
    assert body["metadatabase"]["status"] == "healthy"
    assert body["scheduler"] == {"status": "unhealthy", "latest_scheduler_heartbeat": None}
    elector = LeaderElector(api.ctx.store, _leader_key(api), ttl=10.0, lock_delay=0.0).start()
    try:
        assert elector.wait_elected(5.0)
        body = assert_spec(anon.simulate_get("/api/v2/monitor/health"), "GET", "/api/v2/monitor/health")
        assert body["scheduler"]["status"] == "healthy"
        assert body["scheduler"]["latest_scheduler_heartbeat"] == "2026-03-01T12:00:00Z"
        jobs = assert_spec(api.client("viewer").simulate_get("/api/v2/jobs"), "GET", "/api/v2/jobs")
        assert jobs["total_entries"] == 1 and jobs["jobs"][0]["job_type"] == "SchedulerJob"
        assert jobs["jobs"][0]["state"] == "running"
    finally:
        elector.stop()


def _leader_key(api: ApiHarness) -> str:
    from leoflow.scheduler.signals import leader_key

    return leader_key(api.ctx.config.store.prefix)


def test_ready_is_503_problem_when_store_is_down(api: ApiHarness) -> None:
    api.ctx.store.inner.close()
    doc = _is_problem(api.anon.simulate_get("/health/ready"), 503)
    assert "store" in doc["detail"]
    health = api.anon.simulate_get("/api/v2/monitor/health").json
    assert health["metadatabase"]["status"] == "unhealthy"


def test_spans_are_exported_over_otlp_http(tmp_path: Any) -> None:
    """A real OTLP/HTTP exporter posting to a loopback collector (a stdlib HTTP server)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from leoflow.config import Config

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    collector = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    config = Config()
    config.server.tracing_enabled = True
    config.server.otlp_endpoint = f"http://127.0.0.1:{collector.server_port}/v1/traces"
    from datetime import UTC, datetime

    from leoflow.api.context import build_context
    from leoflow.api.server import create_app
    from leoflow.store.sqlite import SqliteStore

    config.home = str(tmp_path / "otlp-home")
    config.auth.jwt_secret = "o" * 40
    ctx = build_context(config, store=SqliteStore(tmp_path / "otlp.db"), clock=lambda: datetime.now(UTC),
                        projection=False)
    try:
        import falcon.testing

        client = falcon.testing.TestClient(create_app(ctx))
        assert client.simulate_get("/health/ready").status_code == 200
        assert ctx.tracer_provider is not None
        ctx.tracer_provider.force_flush(timeout_millis=5000)
        assert received, "no OTLP export arrived"
        path, ctype, body = received[0]
        assert path == "/v1/traces" and ctype == "application/x-protobuf"
        assert b"GET /health/ready" in body and b"leoflow-server" in body
    finally:
        ctx.close()
        collector.shutdown()
        collector.server_close()
