"""Each role against each write (and read) endpoint of the DAG side: Airflow's role ladder."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ROLES, ApiHarness
from tests.spec_validation import assert_spec

# (method, path, json body, lowest role allowed)
WRITES = [
    ("PATCH", "/api/v2/dags/etl", {"is_paused": True}, "user"),
    ("PATCH", "/api/v2/dags", {"is_paused": True}, "user"),
    ("DELETE", "/api/v2/dags/etl", None, "user"),
    ("POST", "/api/v2/dags/etl/favorite", None, "viewer"),
    ("POST", "/api/v2/dags/etl/unfavorite", None, "viewer"),
]
READS = [
    "/api/v2/dags", "/api/v2/dags/etl", "/api/v2/dags/etl/details", "/api/v2/dags/etl/tasks",
    "/api/v2/dags/etl/tasks/first", "/api/v2/dagTags", "/api/v2/dagWarnings", "/api/v2/dagStats",
    "/api/v2/dagSources/etl", "/api/v2/dags/etl/dagVersions", "/api/v2/dags/etl/dagVersions/1",
    "/api/v2/importErrors", "/api/v2/eventLogs", "/api/v2/providers", "/api/v2/jobs", "/api/v2/config",
]


def _state(api: ApiHarness) -> Any:
    return ({e.state.dag_id: e.state.is_paused for e in api.repos.dags.list()},
            len(api.repos.runs.for_dag("etl")))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "lowest"), WRITES)
def test_write_matrix(api: ApiHarness, role: str, method: str, path: str, body: Any, lowest: str) -> None:
    api.seed_dag("etl")
    api.seed_run("etl", "r1", state="success")
    before = _state(api)
    resp = api.client(role).simulate_request(method, path, json=body)
    assert_spec(resp, method, path)
    if ROLES.index(role) < ROLES.index(lowest):
        assert resp.status_code == 403 and resp.json["detail"] == "Forbidden", resp.text
        assert _state(api) == before
    else:
        assert resp.status_code not in (401, 403), resp.text

    fresh = _state(api)
    anon = api.anon.simulate_request(method, path, json=body)
    assert anon.status_code == 401 and _state(api) == fresh


@pytest.mark.parametrize("path", READS)
def test_every_role_reads(api: ApiHarness, path: str) -> None:
    api.seed_dag("etl")
    for role in ROLES:
        resp = api.client(role).simulate_get(path)
        # /api/v2/config is 403 for everyone while [server] expose_config is off (Airflow's rule)
        expected = 403 if path == "/api/v2/config" else 200
        assert resp.status_code == expected, (role, path, resp.text)
        assert_spec(resp, "GET", path)
    assert api.anon.simulate_get(path).status_code == 401


def test_forbidden_is_counted_and_logged(api: ApiHarness) -> None:
    from prometheus_client import REGISTRY

    api.seed_dag("etl")
    before = REGISTRY.get_sample_value("leoflow_api_auth_failures_total", {"reason": "forbidden"}) or 0
    api.client("viewer").simulate_patch("/api/v2/dags/etl", json={"is_paused": True})
    after = REGISTRY.get_sample_value("leoflow_api_auth_failures_total", {"reason": "forbidden"})
    assert after == before + 1
