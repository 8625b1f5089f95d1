"""Every role against every run-side write endpoint (and the secret-holding reads): Airflow's rules.

viewer < user < op < admin. Users write runs, task instances and XComs; ops also manage pools,
connections and variables, and only ops may even read connections and variables.
"""

from __future__ import annotations

import pytest

from tests.api.runs_helpers import problem_of

ROLES = ("viewer", "user", "op", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}

ENDPOINTS = [
    ("POST", "/api/v2/dags/etl/dagRuns", {"logical_date": None}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r", {"note": "x"}, "user"),
    ("DELETE", "/api/v2/dags/etl/dagRuns/gone", None, "user"),
    ("POST", "/api/v2/dags/etl/dagRuns/r/clear", {"dry_run": True}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns", {"actions": []}, "user"),
    ("POST", "/api/v2/dags/etl/clearDagRuns", {"dry_run": True, "dag_runs": [{"dag_run_id": "r"}]}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a", {"note": "n"}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/-1", {"note": "n"}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/dry_run", {"new_state": "success"}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/-1/dry_run", {"new_state": "success"}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances", {"actions": []}, "user"),
    ("POST", "/api/v2/dags/etl/clearTaskInstances", {"dry_run": True}, "user"),
    ("POST", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries", {"key": "k", "value": 1}, "user"),
    ("PATCH", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries/k0", {"value": 2}, "user"),
    ("DELETE", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries/gone", None, "user"),
    ("POST", "/api/v2/connections", {"connection_id": "c", "conn_type": "http"}, "op"),
    ("PATCH", "/api/v2/connections/c0", {"connection_id": "c0", "conn_type": "http"}, "op"),
    ("DELETE", "/api/v2/connections/gone", None, "op"),
    ("PATCH", "/api/v2/connections", {"actions": []}, "op"),
    ("POST", "/api/v2/connections/test", {"connection_id": "c", "conn_type": "aws"}, "op"),
    ("GET", "/api/v2/connections", None, "op"),
    ("GET", "/api/v2/connections/c0", None, "op"),
    ("POST", "/api/v2/variables", {"key": "k", "value": "v"}, "op"),
    ("PATCH", "/api/v2/variables/v0", {"key": "v0", "value": "v"}, "op"),
    ("DELETE", "/api/v2/variables/gone", None, "op"),
    ("PATCH", "/api/v2/variables", {"actions": []}, "op"),
    ("GET", "/api/v2/variables", None, "op"),
    ("GET", "/api/v2/variables/v0", None, "op"),
    ("POST", "/api/v2/pools", {"name": "p", "slots": 1}, "op"),
    ("PATCH", "/api/v2/pools/p0", {"slots": 3}, "op"),
    ("DELETE", "/api/v2/pools/gone", None, "op"),
    ("PATCH", "/api/v2/pools", {"actions": []}, "op"),
    ("GET", "/api/v2/pools", None, "viewer"),
    ("GET", "/api/v2/dags/etl/dagRuns/r/taskInstances/a/logs/1", None, "viewer"),
    ("POST", "/api/v2/dags/~/dagRuns/list", {}, "viewer"),
]


@pytest.fixture
def seeded(api):
    from leoflow.domain.records import Connection, Pool, Variable
    from leoflow.store.repos.base import TIKey

    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    api.repos.xcom.set(TIKey("etl", "r", "a"), "k0", 1, try_number=1, timestamp=api.clock())
    api.repos.connections.create(Connection("c0", "http"))
    api.repos.variables.create(Variable("v0", "x"))
    api.repos.pools.create(Pool("p0", 2))
    api.ctx.config.ui.test_connection = "Enabled"  # off by default; these tests need it answering
    return api


@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_each_role_against_each_endpoint(seeded, method, path, body, needs):
    anon = seeded.anon.simulate_request(method, path, json=body)
    problem_of(anon, 401, method, path)
    for role in ROLES:
        result = seeded.client(role).simulate_request(method, path, json=body)
        if RANK[role] < RANK[needs]:
            problem = problem_of(result, 403, method, path)
            assert problem["detail"] == "Forbidden"
        else:
            assert result.status_code not in (401, 403), (role, method, path, result.status_code, result.text)
            assert result.status_code < 500, (role, method, path, result.text)
