"""DAG run endpoints against the real app and SQLite store; every body checked against the spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leoflow.domain.dag import Param
from leoflow.domain.states import DagRunState, TaskInstanceState
from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import assert_ti_items, get_ok, problem_of
from tests.spec_validation import assert_spec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _seed(api, n: int = 3) -> None:
    api.seed_dag("etl", tasks=("extract", "transform", "load"))
    api.seed_dag("other", tasks=("only",))
    for i in range(n):
        api.seed_run("etl", f"r{i}", state="success", run_after=T0 + timedelta(hours=i),
                     ti_states={"extract": "success", "transform": "success", "load": "success"})
    api.seed_run("other", "o1", state="failed", run_after=T0 + timedelta(minutes=30), ti_states={"only": "failed"})


def test_list_per_dag_and_wildcard_with_filters_and_ordering(api, client):
    _seed(api)
    body = get_ok(client, "/api/v2/dags/etl/dagRuns")
    assert body["total_entries"] == 3
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["r0", "r1", "r2"]  # default order: id
    run = body["dag_runs"][0]
    assert run["run_after"] == "2026-03-01T12:00:00Z" and run["duration"] == 60.0
    assert run["dag_versions"][0]["version_number"] == 1

    body = get_ok(client, "/api/v2/dags/~/dagRuns?order_by=-run_after&limit=2")
    assert body["total_entries"] == 4
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["r2", "r1"]

    body = get_ok(client, "/api/v2/dags/~/dagRuns?state=failed&state=queued")
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["o1"]

    body = get_ok(client, "/api/v2/dags/~/dagRuns?run_after_gte=2026-03-01T12:30:00Z&run_after_lt=2026-03-01T14:00:00Z")
    assert sorted(r["dag_run_id"] for r in body["dag_runs"]) == ["o1", "r1"]

    body = get_ok(client, "/api/v2/dags/~/dagRuns?dag_id_pattern=OTH&run_id_prefix_pattern=o")
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["o1"]

    body = get_ok(client, "/api/v2/dags/etl/dagRuns?offset=1&limit=1&order_by=-dag_run_id")
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["r1"] and body["total_entries"] == 3


def test_cursor_paging_walks_forward_and_back(api, client):
    _seed(api, n=5)
    first = get_ok(client, "/api/v2/dags/~/dagRuns?cursor=&limit=2&order_by=-run_after")
    assert [r["dag_run_id"] for r in first["dag_runs"]] == ["r4", "r3"]
    assert first["previous_cursor"] is None and first["next_cursor"]
    second = get_ok(client, f"/api/v2/dags/~/dagRuns?cursor={first['next_cursor']}&limit=2&order_by=-run_after")
    assert [r["dag_run_id"] for r in second["dag_runs"]] == ["r2", "r1"]
    assert second["previous_cursor"].startswith("~")
    back = get_ok(client, f"/api/v2/dags/~/dagRuns?cursor={second['previous_cursor']}&limit=2&order_by=-run_after")
    assert [r["dag_run_id"] for r in back["dag_runs"]] == ["r4", "r3"]


def test_get_and_not_found(api, client):
    _seed(api)
    assert get_ok(client, "/api/v2/dags/etl/dagRuns/r1")["dag_run_id"] == "r1"
    body = problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/nope"), 404, "GET",
                      "/api/v2/dags/etl/dagRuns/nope")
    assert "nope" in body["detail"]
    problem_of(client.simulate_get("/api/v2/dags/missing/dagRuns"), 404, "GET", "/api/v2/dags/missing/dagRuns")


def test_trigger_creates_queued_run_with_task_instances_and_audit(api, client):
    api.seed_dag("etl", tasks=("extract", "load"))
    result = client.simulate_post("/api/v2/dags/etl/dagRuns", json={
        "logical_date": "2026-03-01T10:00:00.000Z", "conf": {"x": 1}, "note": "by hand",
        "data_interval_start": None, "data_interval_end": None, "partition_key": None,
    }, headers={"Referer": "http://localhost/dags/etl"})
    assert result.status_code == 200, result.text
    body = assert_spec(result, "POST", "/api/v2/dags/etl/dagRuns")
    assert body["state"] == "queued" and body["run_type"] == "manual" and body["triggered_by"] == "ui"
    assert body["dag_run_id"] == "manual__2026-03-01T12:00:00+00:00"
    assert body["logical_date"] == "2026-03-01T10:00:00Z" and body["conf"] == {"x": 1}
    assert body["note"] == "by hand" and body["triggering_user_name"] == "admin-user"
    tis = api.repos.task_instances.list_for_run("etl", body["dag_run_id"])
    assert [(v.record.task_id, v.record.state) for v in tis] == [("extract", None), ("load", None)]
    events = api.repos.audit.list(limit=None).items
    assert [e.event for e in events] == ["trigger_dag_run"] and events[0].run_id == body["dag_run_id"]
    # The same run id again is a conflict, and nothing changes.
    again = client.simulate_post("/api/v2/dags/etl/dagRuns",
                                 json={"logical_date": None, "dag_run_id": body["dag_run_id"]})
    problem_of(again, 409, "POST", "/api/v2/dags/etl/dagRuns")


def test_trigger_validates_conf_against_params(api, client):
    api.seed_dag("p", tasks=("a",), params={"n": Param("n", 1, {"type": "integer", "minimum": 0})})
    bad = client.simulate_post("/api/v2/dags/p/dagRuns", json={"logical_date": None, "conf": {"n": "x"}})
    body = problem_of(bad, 400, "POST", "/api/v2/dags/p/dagRuns")
    assert "param 'n'" in body["detail"] and body["field"] == "body.conf.n"
    assert api.repos.runs.for_dag("p") == []
    ok = client.simulate_post("/api/v2/dags/p/dagRuns", json={"logical_date": None, "conf": {"n": 3},
                                                               "dag_run_id": "mine"})
    assert ok.status_code == 200 and ok.json["dag_run_id"] == "mine" and ok.json["triggered_by"] == "rest_api"
    odd = client.simulate_post("/api/v2/dags/p/dagRuns", json={"logical_date": None, "dag_run_id": "a b/c"})
    assert problem_of(odd, 400, "POST", "/api/v2/dags/p/dagRuns")["field"] == "body.dag_run_id"
    problem_of(client.simulate_post("/api/v2/dags/none/dagRuns", json={"logical_date": None}), 404, "POST",
               "/api/v2/dags/none/dagRuns")


def test_patch_marks_state_with_effects_and_note(api, client):
    api.seed_dag("etl", tasks=("extract", "load"))
    api.seed_run("etl", "r", state="running", ti_states={"extract": "running", "load": None})
    result = client.simulate_patch("/api/v2/dags/etl/dagRuns/r", json={"state": "failed", "note": "stop"})
    body = assert_spec(result, "PATCH", "/api/v2/dags/etl/dagRuns/r")
    assert body["state"] == "failed" and body["note"] == "stop"
    states = {v.record.task_id: v.record.state for v in api.repos.task_instances.list_for_run("etl", "r")}
    assert states == {"extract": TaskInstanceState.FAILED, "load": TaskInstanceState.SKIPPED}
    # note: null clears the note; state untouched when not sent.
    body = assert_spec(client.simulate_patch("/api/v2/dags/etl/dagRuns/r", json={"note": None}), "PATCH",
                       "/api/v2/dags/etl/dagRuns/r")
    assert body["note"] is None and body["state"] == "failed"
    # update_mask narrows what is applied.
    body = assert_spec(client.simulate_patch("/api/v2/dags/etl/dagRuns/r?update_mask=note",
                                             json={"state": "success", "note": "only note"}),
                       "PATCH", "/api/v2/dags/etl/dagRuns/r")
    assert body["state"] == "failed" and body["note"] == "only note"
    assert [e.event for e in api.repos.audit.list(limit=None).items].count("patch_dag_run") == 3


def test_delete_refuses_running_run(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "live", state="running", ti_states={"a": "running"})
    api.seed_run("etl", "done", state="success", ti_states={"a": "success"})
    problem_of(client.simulate_delete("/api/v2/dags/etl/dagRuns/live"), 409, "DELETE",
               "/api/v2/dags/etl/dagRuns/live")
    assert client.simulate_delete("/api/v2/dags/etl/dagRuns/done").status_code == 204
    assert api.repos.runs.get("etl", "done") is None and api.repos.task_instances.list_for_run("etl", "done") == []
    problem_of(client.simulate_delete("/api/v2/dags/etl/dagRuns/done"), 404, "DELETE",
               "/api/v2/dags/etl/dagRuns/done")


def test_clear_dry_run_then_real_clear_queues_run_and_archives_try(api, client):
    api.seed_dag("etl", tasks=("extract", "load"))
    api.seed_run("etl", "r", state="failed", ti_states={"extract": "success", "load": "failed"})
    path = "/api/v2/dags/etl/dagRuns/r/clear"
    dry = client.simulate_post(path, json={"dry_run": True, "only_failed": True, "only_new": False,
                                           "run_on_latest_version": False})
    body = dry.json
    assert dry.status_code == 200 and [t["task_id"] for t in body["task_instances"]] == ["load"]
    assert_ti_items(body)
    assert api.repos.runs.get("etl", "r").record.state is DagRunState.FAILED  # a dry run changes nothing
    real = client.simulate_post(path, json={"dry_run": False, "only_failed": True})
    body = assert_spec(real, "POST", path)
    assert body["state"] == "queued"
    load = api.repos.task_instances.get(TIKey("etl", "r", "load")).record
    assert load.state is None and load.try_number == 1 and load.max_tries == 1
    tries = get_ok(client, "/api/v2/dags/etl/dagRuns/r/taskInstances/load/tries")
    assert [(t["try_number"], t["state"]) for t in tries["task_instances"]] == [(1, "failed")]


def test_clear_only_new_adds_tasks_of_the_latest_version(api, client):
    api.seed_dag("etl", tasks=("extract",))
    api.seed_run("etl", "r", state="success", ti_states={"extract": "success"})
    api.seed_dag("etl", tasks=("extract", "report"), bundle_version="def456")
    dry = client.simulate_post("/api/v2/dags/etl/dagRuns/r/clear", json={"dry_run": True, "only_new": True})
    assert [t["task_id"] for t in dry.json["task_instances"]] == ["report"]
    real = client.simulate_post("/api/v2/dags/etl/dagRuns/r/clear", json={"dry_run": False, "only_new": True})
    assert real.status_code == 200 and real.json["state"] == "queued"
    tis = {v.record.task_id: v.record.state for v in api.repos.task_instances.list_for_run("etl", "r")}
    assert tis == {"extract": TaskInstanceState.SUCCESS, "report": None}


def test_batch_list_and_bulk_and_clear_dag_runs(api, client):
    _seed(api)
    result = client.simulate_post("/api/v2/dags/~/dagRuns/list", json={
        "dag_ids": ["etl"], "order_by": "-run_after", "page_limit": 2, "run_after_gte": "2026-03-01T12:00:00Z"})
    body = assert_spec(result, "POST", "/api/v2/dags/~/dagRuns/list")
    assert [r["dag_run_id"] for r in body["dag_runs"]] == ["r2", "r1"] and body["total_entries"] == 3
    problem_of(client.simulate_post("/api/v2/dags/etl/dagRuns/list", json={}), 422, "POST",
               "/api/v2/dags/etl/dagRuns/list")

    bulk = client.simulate_patch("/api/v2/dags/etl/dagRuns", json={"actions": [
        {"action": "update", "entities": [{"dag_run_id": "r0", "note": "n0"}, {"dag_run_id": "zz", "note": "x"}]},
        {"action": "delete", "entities": ["r2"]},
    ]})
    body = assert_spec(bulk, "PATCH", "/api/v2/dags/etl/dagRuns")
    assert body["update"]["success"] == ["r0"] and body["update"]["errors"][0]["status_code"] == 404
    assert body["delete"]["success"] == ["r2"] and api.repos.runs.get("etl", "r2") is None
    assert api.repos.runs.get("etl", "r0").record.note == "n0"

    cleared = client.simulate_post("/api/v2/dags/~/clearDagRuns", json={
        "dry_run": False, "dag_runs": [{"dag_run_id": "r0", "dag_id": "etl"}, {"dag_run_id": "o1", "dag_id": "other"}]})
    body = assert_spec(cleared, "POST", "/api/v2/dags/~/clearDagRuns")
    assert sorted(r["dag_run_id"] for r in body["dag_runs"]) == ["o1", "r0"]
    assert all(r["state"] == "queued" for r in body["dag_runs"])
    bad = client.simulate_post("/api/v2/dags/~/clearDagRuns", json={"dag_runs": [{"dag_run_id": "r0"}]})
    problem_of(bad, 400, "POST", "/api/v2/dags/~/clearDagRuns")


def test_wait_streams_states_until_finished(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    result = client.simulate_get("/api/v2/dags/etl/dagRuns/r/wait?interval=0.01")
    assert result.status_code == 200 and result.headers["content-type"] == "application/x-ndjson"
    assert result.text.strip().splitlines() == ['{"state": "success"}']
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r/wait"), 422, "GET",
               "/api/v2/dags/etl/dagRuns/r/wait")


def test_trigger_and_clear_only_new_create_exactly_the_schedulers_task_instances(api, client):
    """The API and the scheduler share ``planning.new_task_instances``: same fields, same order."""
    from leoflow.domain import planning

    api.seed_dag("etl", tasks=("extract", "load"))
    result = client.simulate_post("/api/v2/dags/etl/dagRuns", json={"logical_date": None})
    run = api.repos.runs.get("etl", result.json["dag_run_id"]).record
    dag = api.repos.dags.dag("etl")
    stored = [v.record for v in api.repos.task_instances.list_for_run("etl", run.run_id)]
    assert stored == planning.new_task_instances(dag, run)
    assert [t.priority_weight for t in stored] == [2, 1]  # downstream weights, as the scheduler sets them

    api.seed_dag("etl", tasks=("extract", "load", "report"), bundle_version="def456")
    client.simulate_patch(f"/api/v2/dags/etl/dagRuns/{run.run_id}", json={"state": "success"})
    client.simulate_post(f"/api/v2/dags/etl/dagRuns/{run.run_id}/clear", json={"dry_run": False, "only_new": True})
    rerun = api.repos.runs.get("etl", run.run_id).record
    report = [v.record for v in api.repos.task_instances.list_for_run("etl", run.run_id)
              if v.record.task_id == "report"]
    expected = [t for t in planning.new_task_instances(api.repos.dags.dag("etl"), rerun) if t.task_id == "report"]
    assert report == expected and report[0].dag_version_number == 2
