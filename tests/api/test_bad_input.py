"""Bad input on the DAG-side endpoints: a clear 4xx problem naming the problem, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import ApiHarness
from tests.spec_validation import assert_spec

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def seeded(api: ApiHarness) -> ApiHarness:
    api.seed_dag("etl", tags=("prod",))
    api.seed_dag("other")
    return api


def _snapshot(api: ApiHarness) -> Any:
    return ({e.state.dag_id: e.state.is_paused for e in api.repos.dags.list()},
            api.repos.audit.list(limit=None).total_entries)


BODIES = [
    # (body bytes, headers, status, text that must be in detail, field)
    (b'{"is_paused": tru', JSON, 400, "malformed JSON", "body"),
    (b"", JSON, 400, "empty", "body"),
    (b"[true]", JSON, 422, "body", "body"),
    (b"null", JSON, 422, "body", "body"),
    (b'{"is_paused": "true"}', JSON, 422, "body.is_paused", "body.is_paused"),
    (b'{"is_paused": 1}', JSON, 422, "body.is_paused", "body.is_paused"),
    (b'{"is_paused": null}', JSON, 422, "body.is_paused", "body.is_paused"),
    (b'{"is_paused": true, "owners": ["x"]}', JSON, 422, "body.owners", "body.owners"),
    (b"{}", JSON, 422, "body.is_paused: field required", "body.is_paused"),
    (b"is_paused=true", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json", None),
    (b'{"is_paused": true}', {}, 415, "application/json", None),
    (b"\xc3\x28", JSON, 400, "UTF-8", "body"),
]


@pytest.mark.parametrize(("body", "headers", "status", "needle", "field"), BODIES)
@pytest.mark.parametrize("path", ["/api/v2/dags/etl", "/api/v2/dags"])
def test_patch_bodies(seeded: ApiHarness, path: str, body: bytes, headers: dict[str, str], status: int,
                      needle: str, field: str | None) -> None:
    before = _snapshot(seeded)
    resp = seeded.client("admin").simulate_patch(path, body=body, headers=headers)
    doc = assert_spec(resp, "PATCH", path)
    assert resp.status_code == status, resp.text
    assert needle in doc["detail"], doc
    if field is not None:
        assert doc.get("field") == field
    assert _snapshot(seeded) == before


def test_oversized_body(seeded: ApiHarness) -> None:
    before = _snapshot(seeded)
    size = seeded.ctx.config.server.max_body_bytes
    body = json.dumps({"is_paused": True, "x": "y" * size}).encode()
    resp = seeded.client("admin").simulate_patch("/api/v2/dags/etl", body=body, headers=JSON)
    assert resp.status_code == 413 and assert_spec(resp, "PATCH", "/api/v2/dags/etl")
    assert _snapshot(seeded) == before


def test_chunked_oversized_body_is_bounded(seeded: ApiHarness) -> None:
    """No Content-Length: the reader stops at the limit instead of buffering everything."""
    size = seeded.ctx.config.server.max_body_bytes

    class Stream:
        def __init__(self) -> None:
            self.sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent > size * 4:
                return b""
            chunk = b" " * (65536 if n < 0 else min(n, 65536))
            self.sent += len(chunk)
            return chunk

        def readline(self, n: int = -1) -> bytes:
            return self.read(n)

        def readlines(self, hint: int = -1) -> list[bytes]:
            return [self.read()]

        def __iter__(self) -> Any:
            return iter(self.readlines())

    stream = Stream()
    resp = seeded.client("admin").simulate_request("PATCH", "/api/v2/dags/etl", headers=JSON,
                                                   extras={"wsgi.input": stream})
    assert resp.status_code in (400, 413)
    assert stream.sent <= size + 2 * 65536


QUERIES = [
    ("/api/v2/dags", "limit=-1", 422, "query.limit"),
    ("/api/v2/dags", "limit=abc", 422, "query.limit"),
    ("/api/v2/dags", "offset=-3", 422, "query.offset"),
    ("/api/v2/dags", "offset=1.5", 422, "query.offset"),
    ("/api/v2/dags", "paused=maybe", 422, "query.paused"),
    ("/api/v2/dags", "exclude_stale=2", 422, "query.exclude_stale"),
    ("/api/v2/dags", "last_dag_run_state=exploded", 422, "query.last_dag_run_state"),
    ("/api/v2/dags", "dag_run_state=nope", 422, "query.dag_run_state"),
    ("/api/v2/dags", "tags_match_mode=some", 422, "query.tags_match_mode"),
    ("/api/v2/dags", "order_by=password", 400, "query.order_by"),
    ("/api/v2/dags", "dag_run_start_date_gte=yesterday", 422, "query.dag_run_start_date_gte"),
    ("/api/v2/dags", "dag_run_start_date_gte=2026-01-01T00:00:00", 422, "query.dag_run_start_date_gte"),
    ("/api/v2/dagTags", "order_by=-dag_id", 400, "query.order_by"),
    ("/api/v2/dagWarnings", "warning_type=bad", 422, "query.warning_type"),
    ("/api/v2/dags/etl/dagVersions", "version_number=x", 422, "query.version_number"),
    ("/api/v2/dagSources/etl", "version_number=0", 422, "query.version_number"),
    ("/api/v2/dagSources/etl", "version_number=-1", 422, "query.version_number"),
    ("/api/v2/eventLogs", "before=not-a-date", 422, "query.before"),
    ("/api/v2/eventLogs", "map_index=x", 422, "query.map_index"),
    ("/api/v2/importErrors", "order_by=nope", 400, "query.order_by"),
    ("/api/v2/jobs", "start_date_gte=2026", 422, "query.start_date_gte"),
    ("/api/v2/jobs", "is_alive=perhaps", 422, "query.is_alive"),
]


@pytest.mark.parametrize(("path", "query", "status", "field"), QUERIES)
def test_bad_queries(seeded: ApiHarness, path: str, query: str, status: int, field: str) -> None:
    resp = seeded.client("admin").simulate_get(path, query_string=query)
    doc = assert_spec(resp, "GET", path)
    assert resp.status_code == status, resp.text
    assert doc["field"] == field
    assert field in doc["detail"] or "Ordering" in doc["detail"]


def test_huge_limit_is_clamped_like_airflow(seeded: ApiHarness) -> None:
    resp = seeded.client("admin").simulate_get("/api/v2/dags", query_string="limit=100000000000")
    assert resp.status_code == 200 and resp.json["total_entries"] == 2


@pytest.mark.parametrize(
    "dag_id",
    ["..%2F..%2Fetc%2Fpasswd", "%00", "a%20b", "%F0%9F%98%80", "x" * 600, "%25", "etl%3Fx%3D1", "etl.json", "~"],
)
def test_odd_path_ids(seeded: ApiHarness, dag_id: str) -> None:
    client = seeded.client("admin")
    before = _snapshot(seeded)
    for path in (f"/api/v2/dags/{dag_id}", f"/api/v2/dags/{dag_id}/details", f"/api/v2/dagSources/{dag_id}",
                 f"/api/v2/dags/{dag_id}/tasks"):
        resp = client.simulate_get(path)
        assert resp.status_code in (404, 422), (path, resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert isinstance(resp.json["detail"], str)
    resp = client.simulate_patch(f"/api/v2/dags/{dag_id}", json={"is_paused": True})
    assert resp.status_code in (404, 422)
    assert _snapshot(seeded) == before


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", "99999999999999999999"])
def test_odd_version_numbers(seeded: ApiHarness, version: str) -> None:
    resp = seeded.client("admin").simulate_get(f"/api/v2/dags/etl/dagVersions/{version}")
    assert resp.status_code in (404, 422)
    assert_spec(resp, "GET", "/api/v2/dags/etl/dagVersions/1")
