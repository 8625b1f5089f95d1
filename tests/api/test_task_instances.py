"""Task instance endpoints: lists with the UI's filters, get, tries, mark, clear, links, batch list."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from leoflow.domain.states import DagRunState, TaskInstanceState
from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import get_ok, problem_of
from tests.spec_validation import assert_spec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _seed(api):
    api.seed_dag("etl", tasks=("extract", "transform", "load"))
    api.seed_run("etl", "r1", state="failed", run_after=T0,
                 ti_states={"extract": "success", "transform": "failed", "load": "upstream_failed"})
    api.seed_run("etl", "r2", state="running", run_after=T0 + timedelta(days=1),
                 ti_states={"extract": "running", "transform": None, "load": None})


def test_list_per_run_wildcards_and_ui_filters(api, client):
    _seed(api)
    body = get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances")
    assert body["total_entries"] == 3 and {t["task_id"] for t in body["task_instances"]} == {
        "extract", "transform", "load"}
    ti = body["task_instances"][0]
    assert ti["run_after"] == "2026-03-01T12:00:00Z" and ti["dag_version"]["version_number"] == 1

    # The DAG overview's failed-tasks query.
    body = get_ok(client, "/api/v2/dags/etl/dagRuns/~/taskInstances?run_after_gte=2026-03-01T00:00:00Z"
                          "&run_after_lte=2026-03-01T23:00:00Z&state=failed&order_by=-run_after")
    assert [(t["dag_run_id"], t["task_id"]) for t in body["task_instances"]] == [("r1", "transform")]

    # "no status" selects null states; repeated keys are OR-ed.
    body = get_ok(client, "/api/v2/dags/~/dagRuns/~/taskInstances?state=no_status&state=running")
    assert sorted(t["task_id"] for t in body["task_instances"]) == ["extract", "load", "transform"]
    assert {t["dag_run_id"] for t in body["task_instances"]} == {"r2"}

    # The task view across runs.
    body = get_ok(client, "/api/v2/dags/etl/dagRuns/~/taskInstances?task_id=extract&limit=10&order_by=-run_after")
    assert [t["dag_run_id"] for t in body["task_instances"]] == ["r2", "r1"]

    # Browse page: cursor mode over everything.
    first = get_ok(client, "/api/v2/dags/~/dagRuns/~/taskInstances?cursor=&limit=4&order_by=-id")
    assert len(first["task_instances"]) == 4 and first["next_cursor"] and first["previous_cursor"] is None
    assert {t["dag_run_id"] for t in first["task_instances"][:3]} == {"r2"}
    nxt = get_ok(client, f"/api/v2/dags/~/dagRuns/~/taskInstances?cursor={first['next_cursor']}&limit=4&order_by=-id")
    assert len(nxt["task_instances"]) == 2 and nxt["next_cursor"] is None

    problem_of(client.simulate_get("/api/v2/dags/~/dagRuns/r1/taskInstances"), 400, "GET",
               "/api/v2/dags/~/dagRuns/r1/taskInstances")
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances?order_by=bogus"), 400, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances")
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances?state=nope"), 422, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances")


def test_get_plain_and_mapped_route_tries_and_try(api, client):
    _seed(api)
    assert get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract")["state"] == "success"
    ti = get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/-1")
    assert ti["map_index"] == -1 and ti["try_number"] == 1
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances/nope/-1"), 404, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances/nope/-1")
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/x"), 422, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/x")
    # A second try: the first one moves to history.
    repo = api.repos.task_instances
    cur = repo.get(TIKey("etl", "r1", "transform"))
    repo.transition(cur, dataclasses.replace(cur.record, try_number=2, state=TaskInstanceState.RUNNING))
    tries = get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/tries")
    assert [(t["try_number"], t["state"]) for t in tries["task_instances"]] == [(1, "failed"), (2, "running")]
    assert get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/-1/tries")["total_entries"] == 2
    one = get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/tries/1?map_index=-1")
    assert one["state"] == "failed"
    assert get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/-1/tries/2")["state"] == "running"
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/tries/9"), 404, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform/tries/9")


def test_mark_dry_run_then_mark_success_clears_failed_downstream(api, client):
    _seed(api)
    path = "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform"
    body = {"include_downstream": False, "include_future": False, "include_past": False,
            "include_upstream": False, "new_state": "success", "note": None}
    dry = client.simulate_patch(path + "/dry_run?map_index=-1", json=body)
    out = assert_spec(dry, "PATCH", path + "/dry_run")
    assert [t["task_id"] for t in out["task_instances"]] == ["load", "transform"]
    assert api.repos.task_instances.get(TIKey("etl", "r1", "transform")).record.state is TaskInstanceState.FAILED
    real = client.simulate_patch(path + "?map_index=-1", json=body)
    out = assert_spec(real, "PATCH", path)
    states = {t["task_id"]: t["state"] for t in out["task_instances"]}
    assert states == {"transform": "success", "load": None}
    assert api.repos.runs.get("etl", "r1").record.state is DagRunState.QUEUED  # cleared downstream reruns
    assert any(e.event == "patch_task_instance" for e in api.repos.audit.list(limit=None).items)
    # A note alone, through the mapped route.
    noted = client.simulate_patch(path + "/-1", json={"note": "looked at it"})
    assert assert_spec(noted, "PATCH", path + "/-1")["task_instances"][0]["note"] == "looked at it"
    # Only success/failed/skipped may be set, like Airflow.
    bad = client.simulate_patch(path, json={"new_state": "running"})
    assert problem_of(bad, 422, "PATCH", path)["field"] == "body.new_state"


def test_clear_task_instances_like_the_ui(api, client):
    _seed(api)
    path = "/api/v2/dags/etl/clearTaskInstances"
    ask = {"dry_run": True, "dag_run_id": "r1", "include_downstream": True, "include_future": False,
           "include_past": False, "include_upstream": False, "only_failed": False,
           "run_on_latest_version": False, "task_ids": [["transform", -1]]}
    dry = assert_spec(client.simulate_post(path, json=ask), "POST", path)
    assert [t["task_id"] for t in dry["task_instances"]] == ["load", "transform"]
    real = assert_spec(client.simulate_post(path, json={**ask, "dry_run": False, "prevent_running_task": True,
                                                        "note": "retry"}), "POST", path)
    assert {t["task_id"]: (t["state"], t["note"]) for t in real["task_instances"]} == {
        "load": (None, "retry"), "transform": (None, "retry")}
    assert api.repos.runs.get("etl", "r1").record.state is DagRunState.QUEUED
    # prevent_running_task refuses to clear a running task (the UI shows the detail).
    running = client.simulate_post(path, json={"dry_run": False, "dag_run_id": "r2", "only_failed": False,
                                               "task_ids": ["extract"], "prevent_running_task": True})
    assert "AirflowClearRunningTaskException" in problem_of(running, 409, "POST", path)["detail"]
    problem_of(client.simulate_post(path, json={"dag_run_id": "zz"}), 404, "POST", path)
    problem_of(client.simulate_post(path, json={"dag_run_id": "r1", "task_ids": ["ghost"], "only_failed": False}),
               400, "POST", path)


def test_links_dependencies_list_mapped_and_task_groups(api, client):
    _seed(api)
    assert get_ok(client, "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/links?map_index=-1") == {
        "extra_links": {}, "total_entries": 0}
    deps = get_ok(client, "/api/v2/dags/etl/dagRuns/r2/taskInstances/transform/dependencies")
    assert "extract" in deps["dependencies"][0]["reason"]
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/listMapped"), 404, "GET",
               "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/listMapped")
    group = "/api/v2/dags/etl/dagRuns/r1/taskGroupInstances/g1"
    problem_of(client.simulate_patch(group, json={"new_state": "success"}), 404, "PATCH", group)


def test_batch_list_and_bulk_update(api, client):
    _seed(api)
    path = "/api/v2/dags/~/dagRuns/~/taskInstances/list"
    body = assert_spec(client.simulate_post(path, json={"dag_ids": ["etl"], "state": ["failed", "upstream_failed"],
                                                        "order_by": "-start_date", "page_limit": 10}), "POST", path)
    assert sorted(t["task_id"] for t in body["task_instances"]) == ["load", "transform"]
    bulk_path = "/api/v2/dags/etl/dagRuns/r1/taskInstances"
    out = assert_spec(client.simulate_patch(bulk_path, json={"actions": [
        {"action": "update", "entities": [{"task_id": "load", "note": "bulk note"}]},
        {"action": "delete", "entities": ["extract"]},
    ]}), "PATCH", bulk_path)
    assert out["update"]["success"] and out["delete"]["errors"][0]["status_code"] == 501
    assert api.repos.task_instances.get(TIKey("etl", "r1", "load")).record.note == "bulk note"


def test_cursor_over_many_runs_reads_lazily_and_caps_the_count(api, client, monkeypatch):
    from leoflow.api.public import task_instances

    api.seed_dag("etl", tasks=("extract", "transform", "load"))
    for i in range(6):
        api.seed_run("etl", f"r{i}", state="success", run_after=T0 + timedelta(hours=i),
                     ti_states={"extract": "success", "transform": "success", "load": "failed"})
    monkeypatch.setattr(task_instances, "CURSOR_COUNT_LIMIT", 4)
    reads: list[str] = []
    original = api.repos.task_instances.list_for_run
    monkeypatch.setattr(api.repos.task_instances, "list_for_run",
                        lambda d, r, **kw: reads.append(r) or original(d, r, **kw))
    url = "/api/v2/dags/~/dagRuns/~/taskInstances?limit=2&order_by=-id&cursor="
    page = get_ok(client, url)
    assert [(t["dag_run_id"], t["task_id"]) for t in page["task_instances"]] == [("r5", "transform"), ("r5", "load")]
    assert page["total_entries"] == 4 and page["total_entries_limit"] == 4  # "at least 4"
    assert reads == ["r5", "r4"]  # two runs were enough for the page and the capped count
    seen = [(t["dag_run_id"], t["task_id"]) for t in page["task_instances"]]
    while page["next_cursor"]:
        page = get_ok(client, url + page["next_cursor"])
        seen += [(t["dag_run_id"], t["task_id"]) for t in page["task_instances"]]
    assert len(seen) == 18 == len(set(seen))
    assert page["total_entries"] == 18 and page["total_entries_limit"] is None
