"""Every /ui operation of the 3.3.2 private spec, on the real app and a seeded SQLite store.

Each response is validated against ``_private_ui.yaml`` (``assert_spec``) and checked for the real
data the seed put in the store.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import falcon.testing
import pytest

from leoflow.ui import bundle
from tests.api.conftest import ApiHarness
from tests.api.ui.uiseed import Seeded, seed
from tests.spec_validation import assert_spec, validate_body

FAILED = "manual__2026-03-01T09:00:00+00:00"
RUNNING = "manual__2026-03-01T11:50:00+00:00"
OK = "scheduled__2026-02-27T00:00:00+00:00"


@pytest.fixture
def seeded(api: ApiHarness) -> Seeded:
    return seed(api.repos, api.clock())


def get(client: falcon.testing.TestClient, path: str, query: str = "", status: int = 200) -> Any:
    result = client.simulate_get(path, query_string=query)
    assert result.status_code == status, (path, query, result.text[:500])
    return assert_spec(result, "GET", path)


def test_the_spec_has_24_operations_and_all_are_routed(api: ApiHarness, client: falcon.testing.TestClient) -> None:
    spec = bundle.load_spec("ui")
    ops = [(m.upper(), p) for p, item in spec["paths"].items() for m in item]
    assert len(ops) == 24
    for method, template in ops:
        path = template.replace("{dag_id}", "nope").replace("{dag_run_id}", "r").replace("{run_id}", "r")
        result = client.simulate_request(method, path)
        # Routed: never Falcon's bare 404 for an unknown route (an unknown DAG is a problem naming it).
        assert result.status_code != 405, (method, path)
        if result.status_code == 404:  # only ever "that DAG/run does not exist", never an unrouted path
            assert "nope" in result.json["detail"], (path, result.text)


def test_config(client: falcon.testing.TestClient) -> None:
    body = get(client, "/ui/config")
    assert body["instance_name"] == "Leoflow"
    assert body["auto_refresh_interval"] == 3 and body["theme"] is None and body["fallback_page_limit"] == 50
    assert "is_db_isolation_mode" not in body


def test_config_needs_a_session(api: ApiHarness) -> None:
    result = api.anon.simulate_get("/ui/config")
    assert result.status_code == 401
    assert result.json["detail"] == "Not authenticated"


def test_me_and_menus_follow_the_role(api: ApiHarness) -> None:
    me = get(api.client("viewer"), "/ui/auth/me")
    assert me == {"id": "viewer-user", "username": "viewer-user"}
    viewer = get(api.client("viewer"), "/ui/auth/menus")["authorized_menu_items"]
    assert "Dags" in viewer and "Connections" not in viewer and "Variables" not in viewer
    op = get(api.client("op"), "/ui/auth/menus")["authorized_menu_items"]
    assert {"Connections", "Variables", "Pools", "Audit Log", "XComs"} <= set(op)
    admin = get(api.client("admin"), "/ui/auth/menus")
    assert "Config" not in admin["authorized_menu_items"]  # expose_config is off
    assert admin["extra_menu_items"] == []
    for missing in ("Assets", "Deadlines", "Required Actions", "Docs"):
        assert missing not in admin["authorized_menu_items"]


def test_generate_token(api: ApiHarness, client: falcon.testing.TestClient) -> None:
    result = client.simulate_post("/ui/auth/token", json={"token_type": "cli"})
    body = assert_spec(result, "POST", "/ui/auth/token")
    assert body["token_type"] == "cli" and body["expires_in_seconds"] == api.ctx.tokens.expiry_seconds
    fresh = falcon.testing.TestClient(api.app, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert get(fresh, "/ui/auth/me")["username"] == "admin-user"
    bad = client.simulate_post("/ui/auth/token", json={"token_type": "forever"})
    assert bad.status_code == 422 and bad.json["field"] == "body.token_type"
    assert api.anon.simulate_post("/ui/auth/token", json={}).status_code == 401


def test_dags_list_with_latest_runs(api: ApiHarness, seeded: Seeded, client: falcon.testing.TestClient) -> None:
    body = get(client, "/ui/dags", "dag_runs_limit=14&limit=50&offset=0&tags_match_mode=any&exclude_stale=true"
                                    "&order_by=dag_display_name")
    assert body["total_entries"] == 2
    etl, idle = body["dags"]
    assert etl["dag_id"] == "etl" and idle["dag_id"] == "idle"
    assert [r["run_id"] for r in etl["latest_dag_runs"]] == [RUNNING, FAILED, OK]
    assert [r["state"] for r in etl["latest_dag_runs"]] == ["running", "failed", "success"]
    assert etl["bundle_version"] == "b" * 40 and etl["timetable_summary"] == "0 0 * * *"
    assert etl["timetable_description"] == "At 00:00" and etl["timetable_periodic"] is True
    assert {t["name"] for t in etl["tags"]} == {"etl", "prod"} and etl["owners"] == ["airflow"]
    assert idle["is_paused"] is True and idle["latest_dag_runs"] == []
    assert isinstance(etl["latest_dag_runs"][0]["id"], int)


@pytest.mark.parametrize(("query", "expected"), [
    ("paused=true", ["idle"]),
    ("paused=false", ["etl"]),
    ("tags=prod&tags=misc", ["etl", "idle"]),
    ("tags=prod&tags=misc&tags_match_mode=all", []),
    ("tags=prod&tags=etl&tags_match_mode=all", ["etl"]),
    ("dag_id_pattern=ID", ["idle"]),
    ("dag_id_prefix_pattern=et", ["etl"]),
    ("last_dag_run_state=running", ["etl"]),
    ("last_dag_run_state=failed", []),
    ("dag_run_state=failed", ["etl"]),
    ("dag_ids=idle", ["idle"]),
    ("order_by=-dag_id", ["idle", "etl"]),
    ("limit=1&offset=1", ["idle"]),
    ("is_favorite=true", []),
    ("has_pending_actions=true", []),
    ("bundle_version=" + "b" * 40, ["etl", "idle"]),
    ("owners=airflow", ["etl", "idle"]),
])
def test_dags_filters(seeded: Seeded, client: falcon.testing.TestClient, query: str, expected: list[str]) -> None:
    body = get(client, "/ui/dags", query)
    assert [d["dag_id"] for d in body["dags"]] == expected
    if "limit=1" not in query:
        assert body["total_entries"] == len(expected)


def test_dags_bad_order_is_400(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/ui/dags", query_string="order_by=color")
    assert result.status_code == 400 and "color" in result.json["detail"]


def test_latest_run(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    body = get(client, "/ui/dags/etl/latest_run")
    assert body["run_id"] == RUNNING and body["state"] == "running"
    assert get(client, "/ui/dags/idle/latest_run") is None  # 200 null, not 404
    missing = client.simulate_get("/ui/dags/ghost/latest_run")
    assert missing.status_code == 404 and "ghost" in missing.json["detail"]
    assert client.simulate_get("/ui/dags/~/latest_run").status_code == 400


def test_grid_structure_merges_versions_in_task_order(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    nodes = get(client, "/ui/grid/structure/etl", "include_upstream=false&include_downstream=false&limit=10"
                                                  "&order_by=-run_after")
    assert [n["id"] for n in nodes] == ["extract", "transform", "load", "report"]
    sub = get(client, "/ui/grid/structure/etl", "root=^load$&include_upstream=true&depth=1")
    assert [n["id"] for n in sub] == ["transform", "load"]


def test_grid_runs(seeded: Seeded, api: ApiHarness, client: falcon.testing.TestClient) -> None:
    runs = get(client, "/ui/grid/runs/etl", "offset=0&limit=11&order_by=-run_after")
    assert [r["run_id"] for r in runs] == [RUNNING, FAILED, OK]
    running, failed, ok = runs
    assert running["duration"] == pytest.approx(600.0)  # still running: now - start
    assert failed["duration"] == pytest.approx(540.0) and failed["has_note"] is True
    assert ok["dag_versions"][0]["version_number"] == 1 and failed["dag_versions"][0]["version_number"] == 2
    assert [r["run_id"] for r in get(client, "/ui/grid/runs/etl", "limit=1&order_by=-run_after")] == [RUNNING]
    assert [r["run_id"] for r in get(client, "/ui/grid/runs/etl", "state=failed&state=success&order_by=run_after")] \
        == [OK, FAILED]
    assert [r["run_id"] for r in get(client, "/ui/grid/runs/etl", "run_type=scheduled")] == [OK]
    since = (api.clock() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert [r["run_id"] for r in get(client, "/ui/grid/runs/etl", f"run_after_gte={quote(since)}")] == [RUNNING]
    naive = client.simulate_get("/ui/grid/runs/etl", query_string="run_after_gte=2026-01-01T00:00:00")
    assert naive.status_code == 422 and naive.json["field"] == "query.run_after_gte"


def _ndjson(result: falcon.testing.Result, path: str) -> list[dict[str, Any]]:
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in result.text.splitlines() if line.strip()]
    for line in lines:
        validate_body("GET", path, 200, line, "application/json")  # each line is one GridTISummaries
    return lines


def test_ti_summaries_one_line_per_run(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    path = "/ui/grid/ti_summaries/etl"
    query = "&".join(f"run_ids={quote(r)}" for r in (RUNNING, FAILED, OK, "nope"))
    result = client.simulate_get(path, query_string=query)
    lines = _ndjson(result, path)
    assert [line["run_id"] for line in lines] == [RUNNING, FAILED, OK]
    running = {t["task_id"]: t for t in lines[0]["task_instances"]}
    assert [t["task_id"] for t in lines[0]["task_instances"]] == ["extract", "transform", "load", "report"]
    assert running["extract"]["state"] == "success" and running["transform"]["state"] == "running"
    assert running["load"]["state"] is None and running["transform"]["max_end_date"] is None
    failed = {t["task_id"]: t for t in lines[1]["task_instances"]}
    assert failed["transform"]["state"] == "failed" and failed["transform"]["has_note"] is True
    assert failed["load"]["state"] == "upstream_failed" and failed["transform"]["dag_version_number"] == 2
    assert [t["task_id"] for t in lines[2]["task_instances"]] == ["extract", "transform", "load"]
    again = client.simulate_get(path, query_string=query, headers={"If-None-Match": result.headers["etag"]})
    assert again.status_code == 304 and again.text == ""


def test_structure_data_by_version(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    latest = get(client, "/ui/structure/structure_data", "dag_id=etl&external_dependencies=false&version_number=2")
    assert [n["id"] for n in latest["nodes"]] == ["extract", "transform", "load", "report"]
    assert {(e["source_id"], e["target_id"]) for e in latest["edges"]} == {
        ("extract", "transform"), ("transform", "load"), ("load", "report")}
    assert latest["nodes"][2]["operator"] == "ContainerTask" and latest["nodes"][0]["tooltip"]
    v1 = get(client, "/ui/structure/structure_data", "dag_id=etl&version_number=1")
    assert [n["id"] for n in v1["nodes"]] == ["extract", "transform", "load"]
    default = get(client, "/ui/structure/structure_data", "dag_id=etl")
    assert len(default["nodes"]) == 4
    down = get(client, "/ui/structure/structure_data", "dag_id=etl&root=transform&include_downstream=true")
    assert [n["id"] for n in down["nodes"]] == ["transform", "load", "report"]
    missing = client.simulate_get("/ui/structure/structure_data", query_string="dag_id=etl&version_number=9")
    assert missing.status_code == 404 and "version number 9" in missing.json["detail"]
    no_dag = client.simulate_get("/ui/structure/structure_data")
    assert no_dag.status_code == 422 and no_dag.json["field"] == "query.dag_id"


def test_dependencies(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    assert get(client, "/ui/dependencies") == {"nodes": [], "edges": []}
    one = get(client, "/ui/dependencies", "node_id=dag:etl")
    assert one["nodes"] == [{"id": "dag:etl", "label": "etl", "type": "dag"}]
    assert client.simulate_get("/ui/dependencies", query_string="node_id=dag:ghost").status_code == 404
    assert client.simulate_get("/ui/dependencies", query_string="dependency_type=data").status_code == 400


def test_dashboard(seeded: Seeded, api: ApiHarness, client: falcon.testing.TestClient) -> None:
    stats = get(client, "/ui/dashboard/dag_stats")
    # etl is active; its latest run by logical date is running (not failed); idle is paused.
    assert stats == {"active_dag_count": 1, "failed_dag_count": 0, "running_dag_count": 1, "queued_dag_count": 0}
    start = quote((api.clock() - timedelta(days=1)).isoformat().replace("+00:00", "Z"))
    metrics = get(client, "/ui/dashboard/historical_metrics_data", f"start_date={start}")
    assert metrics["dag_run_states"] == {"queued": 0, "running": 1, "success": 0, "failed": 1}
    tis = metrics["task_instance_states"]
    assert tis["success"] == 2 and tis["failed"] == 1 and tis["upstream_failed"] == 2
    assert tis["running"] == 1 and tis["no_status"] == 2 and tis["awaiting_input"] == 0
    everything = get(client, "/ui/dashboard/historical_metrics_data", "start_date=2020-01-01T00:00:00Z")
    assert everything["dag_run_states"]["success"] == 1
    assert client.simulate_get("/ui/dashboard/historical_metrics_data").status_code == 422


def test_calendar_counts_runs_by_day_and_plans_the_schedule(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    body = get(client, "/ui/calendar/etl", "granularity=daily&logical_date_gte=2026-01-01T00:00:00Z"
                                           "&logical_date_lte=2026-12-31T23:59:59Z")
    real = [d for d in body["dag_runs"] if d["state"] != "planned"]
    assert {(d["date"], d["state"], d["count"]) for d in real} == {
        ("2026-02-27T00:00:00Z", "success", 1), ("2026-03-01T00:00:00Z", "failed", 1),
        ("2026-03-01T00:00:00Z", "running", 1)}
    planned = [d for d in body["dag_runs"] if d["state"] == "planned"]
    assert planned and all(d["count"] == 1 for d in planned)
    assert planned[-1]["date"] == "2026-12-31T00:00:00Z"
    assert body["total_entries"] == len(body["dag_runs"])
    hourly = get(client, "/ui/calendar/etl", "granularity=hourly&logical_date_gte=2026-03-01T00:00:00Z"
                                             "&logical_date_lte=2026-03-01T23:00:00Z")
    assert {(d["date"], d["state"]) for d in hourly["dag_runs"] if d["state"] != "planned"} == {
        ("2026-03-01T09:00:00Z", "failed"), ("2026-03-01T11:00:00Z", "running")}
    assert client.simulate_get("/ui/calendar/etl", query_string="granularity=weekly").status_code == 422


def test_gantt_shows_every_try(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    body = get(client, f"/ui/gantt/etl/{quote(FAILED, safe='')}")
    rows = [(t["task_id"], t["try_number"], t["state"]) for t in body["task_instances"]]
    assert rows == [("extract", 1, "success"), ("transform", 1, "failed"), ("transform", 2, "failed"),
                    ("load", 0, "upstream_failed"), ("report", 0, "upstream_failed")]
    assert body["task_instances"][0]["start_date"] == "2026-03-01T09:00:00Z"
    missing = client.simulate_get("/ui/gantt/etl/nope")
    assert missing.status_code == 404


def test_run_stats(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    body = get(client, f"/ui/dags/etl/dagRuns/{quote(OK, safe='')}/stats")
    assert body["duration"]["mean"] == pytest.approx(450.0)  # 360 s and 540 s
    assert body["duration"]["p50"] == pytest.approx(450.0) and body["duration"]["mode"] is None
    assert client.simulate_get("/ui/dags/etl/dagRuns/nope/stats").status_code == 404


def test_connection_hook_meta(api: ApiHarness) -> None:
    body = get(api.client("op"), "/ui/connections/hook_meta")
    types = {m["connection_type"]: m for m in body}
    assert {"generic", "http", "postgres", "aws", "ssh"} <= set(types)
    assert types["aws"]["standard_fields"]["host"]["hidden"] is True
    assert types["postgres"]["standard_fields"]["url_schema"]["title"] == "Database"
    assert types["http"]["extra_fields"]["headers"]["schema"]["type"] == ["string", "null"]
    assert api.client("viewer").simulate_get("/ui/connections/hook_meta").status_code == 403


def test_features_leoflow_does_not_have_answer_honestly(seeded: Seeded, client: falcon.testing.TestClient) -> None:
    assert get(client, "/ui/backfills", "dag_id=etl&active=true") == {"backfills": [], "total_entries": 0}
    assert get(client, "/ui/next_run_assets/etl")["events"] == []
    assert get(client, "/ui/teams") == {"teams": [], "total_entries": 0}
    assert get(client, "/ui/dags/~/dagRuns/~/deadlines",
               "limit=5&order_by=deadline_time&missed=false&deadline_time_gt=2026-03-01T00:00:00Z")["deadlines"] == []
    assert get(client, "/ui/dags/etl/deadlineAlerts", "limit=100")["deadline_alerts"] == []
    assert get(client, "/ui/partitioned_dag_runs", "dag_id=etl")["partitioned_dag_runs"] == []
    pending = client.simulate_get("/ui/pending_partitioned_dag_run/etl", query_string="partition_key=2026")
    assert pending.status_code == 404 and "partitioned" in pending.json["detail"]
    assert client.simulate_get("/ui/backfills", query_string="dag_id=ghost").status_code == 404
    assert client.simulate_get("/ui/dags/ghost/deadlineAlerts").status_code == 404
    bad = client.simulate_get("/ui/dags/~/dagRuns/~/deadlines", query_string="deadline_time_gt=yesterday")
    assert bad.status_code == 422


def test_every_ui_read_needs_a_session(seeded: Seeded, api: ApiHarness) -> None:
    for path in ("/ui/dags", "/ui/grid/runs/etl", "/ui/grid/ti_summaries/etl", "/ui/dashboard/dag_stats",
                 "/ui/structure/structure_data?dag_id=etl", "/ui/auth/menus", "/ui/teams"):
        result = api.anon.simulate_get(path)
        assert result.status_code == 401, path


def test_favorites_are_per_user(seeded: Seeded, api: ApiHarness) -> None:
    admin, viewer = api.client("admin"), api.client("viewer")
    assert admin.simulate_post("/api/v2/dags/idle/favorite").status_code == 204
    mine = get(admin, "/ui/dags", "is_favorite=true&limit=10")
    assert [d["dag_id"] for d in mine["dags"]] == ["idle"] and mine["dags"][0]["is_favorite"] is True
    assert get(viewer, "/ui/dags", "is_favorite=true")["dags"] == []
    everything = {d["dag_id"]: d["is_favorite"] for d in get(admin, "/ui/dags")["dags"]}
    assert everything == {"etl": False, "idle": True}


def test_ti_summaries_follow_every_change(seeded: Seeded, api: ApiHarness, client: falcon.testing.TestClient) -> None:
    from dataclasses import replace

    from leoflow.domain.states import TaskInstanceState
    from leoflow.store.repos.base import TIKey

    path = "/ui/grid/ti_summaries/etl"
    query = f"run_ids={quote(RUNNING)}"
    before = {t["task_id"]: t["state"] for t in _ndjson(client.simulate_get(path, query_string=query), path)[0]
              ["task_instances"]}
    assert before["transform"] == "running"
    tis = api.repos.task_instances
    cur = tis.require(TIKey("etl", RUNNING, "transform"))
    tis.transition(cur, replace(cur.record, state=TaskInstanceState.SUCCESS, end_date=api.clock()))
    after = {t["task_id"]: t["state"] for t in _ndjson(client.simulate_get(path, query_string=query), path)[0]
             ["task_instances"]}
    assert after["transform"] == "success" and after["extract"] == "success"
