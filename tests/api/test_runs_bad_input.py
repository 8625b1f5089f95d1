"""Bad input on the run-side endpoints: a clear 4xx problem naming the field, and nothing stored."""

from __future__ import annotations

import json

import pytest

from tests.api.runs_helpers import problem_of

# (method, path, a valid body) of every write endpoint that takes a JSON body.
WRITES = [
    ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": None}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r", {"note": "x"}),
    ("POST", "/api/v2/dags/etl/dagRuns/r/clear", {"dry_run": True}),
    ("POST", "/api/v2/dags/~/dagRuns/list", {}),
    ("PATCH", "/api/v2/dags/etl/dagRuns", {"actions": []}),
    ("POST", "/api/v2/dags/etl/clearDagRuns", {"dag_runs": [{"dag_run_id": "r"}]}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a", {"note": "x"}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/-1", {"note": "x"}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/dry_run", {"new_state": "success"}),
    ("POST", "/api/v2/dags/etl/clearTaskInstances", {"dry_run": True}),
    ("POST", "/api/v2/dags/~/dagRuns/~/taskInstances/list", {}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances", {"actions": []}),
    ("POST", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries", {"key": "k", "value": 1}),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries/k", {"value": 1}),
    ("POST", "/api/v2/connections", {"connection_id": "c", "conn_type": "http"}),
    ("PATCH", "/api/v2/connections/c", {"connection_id": "c", "conn_type": "http"}),
    ("PATCH", "/api/v2/connections", {"actions": []}),
    ("POST", "/api/v2/connections/test", {"connection_id": "c", "conn_type": "http"}),
    ("POST", "/api/v2/variables", {"key": "k", "value": "v"}),
    ("PATCH", "/api/v2/variables/k", {"key": "k", "value": "v"}),
    ("PATCH", "/api/v2/variables", {"actions": []}),
    ("POST", "/api/v2/pools", {"name": "p", "slots": 1}),
    ("PATCH", "/api/v2/pools/p", {"slots": 1}),
    ("PATCH", "/api/v2/pools", {"actions": []}),
]
IDS = [f"{m} {p}" for m, p, _ in WRITES]


@pytest.fixture
def seeded(api):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    api.ctx.config.ui.test_connection = "Enabled"  # off by default; these tests need it answering
    return api


def _snapshot(api) -> str:
    """Everything the store holds but the audit log (audits are only written for accepted writes)."""
    entries = api.ctx.store.list("leoflow/")
    return json.dumps(sorted((e.key, e.value.hex(), e.modify_index) for e in entries if "/audit/" not in e.key))


def _send(client, method, path, raw: bytes | str, content_type: str = "application/json"):
    return client.simulate_request(method, path, body=raw, headers={"Content-Type": content_type})


@pytest.mark.parametrize(("method", "path", "valid"), WRITES, ids=IDS)
def test_malformed_unknown_fields_wrong_types_oversized(seeded, client, method, path, valid):
    before = _snapshot(seeded)
    assert problem_of(_send(client, method, path, b'{"note": '), 422, method, path)["field"] == "body"
    problem_of(_send(client, method, path, b"\xff\xfe"), 422, method, path)
    body = problem_of(_send(client, method, path, json.dumps({**valid, "bogus_field": 1})), 422, method, path)
    assert body["field"].endswith("bogus_field") and "bogus_field" in body["detail"]
    problem_of(_send(client, method, path, json.dumps([1, 2])), 422, method, path)
    problem_of(_send(client, method, path, json.dumps(valid), "text/plain"), 415, method, path)
    huge = json.dumps({**valid, "pad": "x" * (2 * 1024 * 1024)})
    problem_of(_send(client, method, path, huge), 413, method, path)
    assert _snapshot(seeded) == before
    assert seeded.repos.audit.list(limit=None).items == []


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": "2026-03-01T10:00:00"}, "body.logical_date"),
        ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": "yesterday"}, "body.logical_date"),
        ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": None, "conf": [1]}, "body.conf"),
        ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": None, "dag_run_id": 5}, "body.dag_run_id"),
        ("POST", "/api/v2/dags/etl/dagRuns", {}, "body.logical_date"),
        ("PATCH", "/api/v2/dags/etl/dagRuns/r", {"state": "running"}, "body.state"),
        ("PATCH", "/api/v2/dags/etl/dagRuns/r", {"note": "x" * 1001}, "body.note"),
        ("POST", "/api/v2/dags/etl/dagRuns/r/clear", {"dry_run": "yes"}, "body.dry_run"),
        ("POST", "/api/v2/dags/~/dagRuns/list", {"page_limit": -1}, "body.page_limit"),
        ("POST", "/api/v2/dags/etl/clearTaskInstances", {"task_ids": [["a", "x"]]}, "body.task_ids.0"),
        ("POST", "/api/v2/pools", {"name": "p", "slots": -2}, "body.slots"),
        ("POST", "/api/v2/pools", {"name": "p", "slots": "1"}, "body.slots"),
        ("POST", "/api/v2/connections", {"connection_id": "bad id!", "conn_type": "http"}, "body.connection_id"),
        ("POST", "/api/v2/connections", {"connection_id": "c", "conn_type": "http", "port": "80"}, "body.port"),
        ("POST", "/api/v2/variables", {"key": "k" * 251, "value": "v"}, "body.key"),
        ("POST", "/api/v2/variables", {"value": "v"}, "body.key"),
        ("PATCH", "/api/v2/pools", {"actions": [{"action": "create", "entities": [{"name": "p", "slots": "x"}]}]},
         "body.actions.0.entities.0.slots"),
        ("PATCH", "/api/v2/pools", {"actions": [{"action": "explode", "entities": []}]}, "body.actions.0"),
    ],
)
def test_wrong_values_name_the_field(seeded, client, method, path, body, field):
    before = _snapshot(seeded)
    problem = problem_of(client.simulate_request(method, path, json=body), 422, method, path)
    assert problem["field"] == field, problem
    assert problem["errors"][0]["loc"][0] == "body"
    assert _snapshot(seeded) == before


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v2/dags/~/dagRuns?limit=-1", "query.limit"),
        ("/api/v2/dags/~/dagRuns?limit=abc", "query.limit"),
        ("/api/v2/dags/~/dagRuns?offset=-5", "query.offset"),
        ("/api/v2/dags/~/dagRuns?run_after_gte=2026-01-01T00:00:00", "query.run_after_gte"),
        ("/api/v2/dags/~/dagRuns?run_after_gte=not-a-date", "query.run_after_gte"),
        ("/api/v2/dags/~/dagRuns?state=dancing", "query.state"),
        ("/api/v2/dags/~/dagRuns?duration_gte=nan", "query.duration_gte"),
        ("/api/v2/dags/~/dagRuns/~/taskInstances?try_number=x", "query.try_number"),
        ("/api/v2/dags/etl/dagRuns/r/taskInstances/a/logs/1?map_index=-7", "query.map_index"),
        ("/api/v2/dags/etl/dagRuns/r/taskInstances/a/logs/x", "path.try_number"),
        ("/api/v2/pools?limit=1.5", "query.limit"),
        ("/api/v2/variables?offset=x", "query.offset"),
    ],
)
def test_bad_query_values_are_422_naming_the_parameter(seeded, client, path, field):
    problem = problem_of(client.simulate_get(path), 422, "GET", path.split("?")[0])
    assert problem["field"] == field


def test_order_by_unknown_field_is_400_and_big_limits_are_clamped(seeded, client):
    problem_of(client.simulate_get("/api/v2/dags/~/dagRuns?order_by=-password"), 400, "GET",
               "/api/v2/dags/~/dagRuns")
    ok = client.simulate_get("/api/v2/dags/~/dagRuns?limit=1000000")
    assert ok.status_code == 200 and ok.json["total_entries"] == 1


@pytest.mark.parametrize("odd", ["%2E%2E", "a%2Fb", "%00", "%E2%9C%93", "x" * 300, "%3Cscript%3E", "%20"])
def test_odd_path_ids_are_404_problems_not_crashes(seeded, client, odd):
    for path in (f"/api/v2/dags/{odd}/dagRuns/r", f"/api/v2/dags/etl/dagRuns/{odd}",
                 f"/api/v2/dags/etl/dagRuns/r/taskInstances/{odd}/-1", f"/api/v2/variables/{odd}",
                 f"/api/v2/connections/{odd}", f"/api/v2/pools/{odd}"):
        result = client.simulate_get(path)
        assert result.status_code == 404, (path, result.status_code, result.text)
        assert result.headers["content-type"] == "application/problem+json"
        assert isinstance(result.json["detail"], str)
    # A write with an odd id stores nothing under a mangled key.
    result = client.simulate_post(f"/api/v2/dags/{odd}/dagRuns", json={"logical_date": None})
    assert result.status_code == 404
