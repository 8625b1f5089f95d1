"""XCom entries: list with ``~``, get native/stringify, add, patch, delete."""

from __future__ import annotations

from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import get_ok, problem_of
from tests.spec_validation import assert_spec

BASE = "/api/v2/dags/etl/dagRuns/r/taskInstances/a/xcomEntries"


def _seed(api):
    api.seed_dag("etl", tasks=("a", "b"))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success", "b": "success"})
    api.repos.xcom.set(TIKey("etl", "r", "a"), "return_value", {"rows": 3}, try_number=1, timestamp=api.clock())
    api.repos.xcom.set(TIKey("etl", "r", "b"), "out", [1, 2], try_number=1, timestamp=api.clock())


def test_list_everywhere_and_filtered(api, client):
    _seed(api)
    body = get_ok(client, "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=50&offset=0")
    assert body["total_entries"] == 2 and {x["key"] for x in body["xcom_entries"]} == {"return_value", "out"}
    assert "value" not in body["xcom_entries"][0]
    body = get_ok(client, "/api/v2/dags/etl/dagRuns/r/taskInstances/~/xcomEntries?xcom_key_pattern=RET")
    assert [x["task_id"] for x in body["xcom_entries"]] == ["a"]
    body = get_ok(client, "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?order_by=-key")
    assert [x["key"] for x in body["xcom_entries"]] == ["return_value", "out"]


def test_get_native_and_stringified(api, client):
    _seed(api)
    native = get_ok(client, BASE + "/return_value?map_index=-1&deserialize=true&stringify=false")
    assert native["value"] == {"rows": 3} and native["logical_date"] == "2026-03-01T12:00:00Z"
    text = get_ok(client, BASE + "/return_value?stringify=true")
    assert text["value"] == "{'rows': 3}"
    problem_of(client.simulate_get(BASE + "/nope"), 404, "GET", BASE + "/nope")


def test_create_patch_delete_with_audit(api, client):
    _seed(api)
    created = client.simulate_post(BASE, json={"key": "extra", "value": {"k": [1]}})
    assert created.status_code == 201 and assert_spec(created, "POST", BASE)["value"] == {"k": [1]}
    problem_of(client.simulate_post(BASE, json={"key": "extra", "value": 1}), 409, "POST", BASE)
    patched = client.simulate_patch(BASE + "/extra", json={"value": "new"})
    assert assert_spec(patched, "PATCH", BASE + "/extra")["value"] == "new"
    assert api.repos.xcom.get(TIKey("etl", "r", "a"), "extra").value == "new"
    problem_of(client.simulate_patch(BASE + "/ghost", json={"value": 1}), 404, "PATCH", BASE + "/ghost")
    assert client.simulate_delete(BASE + "/extra").status_code == 204
    problem_of(client.simulate_delete(BASE + "/extra"), 404, "DELETE", BASE + "/extra")
    events = [e.event for e in api.repos.audit.list(limit=None).items]
    assert sorted(events) == ["create_xcom_entry", "delete_xcom_entry", "update_xcom_entry"]
    missing_task = "/api/v2/dags/etl/dagRuns/r/taskInstances/zz/xcomEntries"
    problem_of(client.simulate_post(missing_task, json={"key": "k", "value": 1}), 404, "POST", missing_task)
    big = client.simulate_post(BASE, json={"key": "big", "value": "x" * (300 * 1024)})
    assert big.status_code == 413 and api.repos.xcom.get(TIKey("etl", "r", "a"), "big") is None
