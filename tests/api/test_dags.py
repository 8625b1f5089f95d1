"""The DAG-side endpoints against real store data; every body is validated against the official spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.domain.dag import Param
from tests.api.conftest import ApiHarness
from tests.spec_validation import assert_spec


def get(client: Any, path: str, query: str = "", **kw: Any) -> Any:
    result = client.simulate_get(path, query_string=query, **kw)
    return assert_spec(result, "GET", path), result


def seed_three(api: ApiHarness) -> None:
    api.seed_dag("etl_daily", tags=("prod", "etl"), schedule="@daily", owner="data",
                 params={"rows": Param("rows", default=10, schema={"type": "integer", "minimum": 1},
                                       description="how many")},
                 start_date=datetime(2026, 1, 1, tzinfo=UTC))
    api.seed_dag("reports", tags=("prod",), schedule="0 6 * * 1", description="weekly reports")
    api.seed_dag("adhoc", schedule=None, tasks=("only",))
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    api.seed_run("etl_daily", "r1", state="success", run_after=t0)
    api.seed_run("etl_daily", "r2", state="failed", run_after=t0 + timedelta(days=1))
    api.seed_run("reports", "r1", state="success", run_after=t0)
    api.seed_run("adhoc", "r1", state="running", run_after=t0, ti_states={"only": "running"})


def ids(body: dict[str, Any]) -> list[str]:
    return [d["dag_id"] for d in body["dags"]]


def test_list_dags_filters_and_ordering(api: ApiHarness, viewer: Any) -> None:
    seed_three(api)
    body, _ = get(viewer, "/api/v2/dags")
    assert ids(body) == ["adhoc", "etl_daily", "reports"] and body["total_entries"] == 3
    assert get(viewer, "/api/v2/dags", "tags=prod")[0]["total_entries"] == 2
    assert ids(get(viewer, "/api/v2/dags", "tags=prod&tags=etl&tags_match_mode=all")[0]) == ["etl_daily"]
    assert ids(get(viewer, "/api/v2/dags", "tags=etl,prod")[0]) == []  # never comma-split
    assert ids(get(viewer, "/api/v2/dags", "dag_id_pattern=ETL")[0]) == ["etl_daily"]
    assert ids(get(viewer, "/api/v2/dags", "dag_id_pattern=rep|adh")[0]) == ["adhoc", "reports"]
    assert ids(get(viewer, "/api/v2/dags", "dag_id_pattern=~")[0]) == ["adhoc", "etl_daily", "reports"]
    assert ids(get(viewer, "/api/v2/dags", "dag_id_prefix_pattern=re")[0]) == ["reports"]
    assert ids(get(viewer, "/api/v2/dags", "owners=data")[0]) == ["etl_daily"]
    assert ids(get(viewer, "/api/v2/dags", "last_dag_run_state=failed")[0]) == ["etl_daily"]
    assert ids(get(viewer, "/api/v2/dags", "last_dag_run_state=success")[0]) == ["reports"]
    assert ids(get(viewer, "/api/v2/dags", "dag_run_state=running")[0]) == ["adhoc"]
    assert ids(get(viewer, "/api/v2/dags", "order_by=-dag_id")[0]) == ["reports", "etl_daily", "adhoc"]
    page = get(viewer, "/api/v2/dags", "limit=1&offset=1")[0]
    assert ids(page) == ["etl_daily"] and page["total_entries"] == 3
    assert ids(get(viewer, "/api/v2/dags", "timetable_type=NullTimetable")[0]) == ["adhoc"]
    assert get(viewer, "/api/v2/dags", "has_import_errors=false")[0]["total_entries"] == 3
    api.client("user").simulate_patch("/api/v2/dags/reports", json={"is_paused": True})
    assert ids(get(viewer, "/api/v2/dags", "paused=true")[0]) == ["reports"]
    assert ids(get(viewer, "/api/v2/dags", "paused=false")[0]) == ["adhoc", "etl_daily"]


def test_dag_fields(api: ApiHarness, viewer: Any) -> None:
    seed_three(api)
    dag, _ = get(viewer, "/api/v2/dags/etl_daily")
    assert dag["tags"] == [{"name": "prod", "dag_id": "etl_daily", "dag_display_name": "etl_daily"},
                           {"name": "etl", "dag_id": "etl_daily", "dag_display_name": "etl_daily"}]
    # Airflow's CronMixin expands presets in the summary and describes the expression.
    assert dag["timetable_summary"] == "0 0 * * *" and dag["timetable_periodic"] is True
    assert dag["timetable_description"] == "At 00:00"
    assert dag["owners"] == ["data"] and dag["fileloc"] == "dags/etl_daily.yaml"
    assert dag["bundle_name"] == "dags-folder" and dag["bundle_version"] == "abc123"
    assert dag["last_parsed_time"] == "2026-03-01T12:00:00Z"
    adhoc, _ = get(viewer, "/api/v2/dags/adhoc")
    assert adhoc["timetable_summary"] is None and adhoc["timetable_description"] == "Never, external triggers only"


def test_dag_details(api: ApiHarness, viewer: Any) -> None:
    seed_three(api)
    details, _ = get(viewer, "/api/v2/dags/etl_daily/details")
    assert details["latest_dag_version"]["version_number"] == 1
    assert details["latest_dag_version"]["bundle_version"] == "abc123"
    assert details["params"]["rows"]["value"] == 10
    assert details["params"]["rows"]["schema"] == {"type": "integer", "minimum": 1}
    assert details["params"]["rows"]["description"] == "how many"
    assert details["start_date"] == "2026-01-01T00:00:00Z" and details["timezone"] == "UTC"
    assert details["active_runs_count"] == 0 and details["concurrency"] == 16
    running, _ = get(viewer, "/api/v2/dags/adhoc/details")
    assert running["active_runs_count"] == 1
    missing = viewer.simulate_get("/api/v2/dags/nope/details")
    assert missing.status_code == 404 and "nope" in missing.json["detail"]
    assert_spec(missing, "GET", "/api/v2/dags/nope/details")


def test_dag_versions_follow_new_content(api: ApiHarness, viewer: Any) -> None:
    api.seed_dag("etl", tasks=("a",), bundle_version="c1", source="v1")
    api.clock.advance(minutes=5)
    api.seed_dag("etl", tasks=("a", "b"), bundle_version="c2", source="v2")
    versions, _ = get(viewer, "/api/v2/dags/etl/dagVersions")
    assert [v["version_number"] for v in versions["dag_versions"]] == [1, 2]
    assert [v["bundle_version"] for v in versions["dag_versions"]] == ["c1", "c2"]
    newest, _ = get(viewer, "/api/v2/dags/etl/dagVersions", "order_by=-version_number&limit=1")
    assert newest["dag_versions"][0]["version_number"] == 2 and newest["total_entries"] == 2
    assert get(viewer, "/api/v2/dags/etl/dagVersions", "bundle_version=c1")[0]["total_entries"] == 1
    one, _ = get(viewer, "/api/v2/dags/etl/dagVersions/1")
    assert one["created_at"] == "2026-03-01T12:00:00Z"
    assert one["id"] == versions["dag_versions"][0]["id"] != versions["dag_versions"][1]["id"]
    details, _ = get(viewer, "/api/v2/dags/etl/details")
    assert details["latest_dag_version"]["id"] == versions["dag_versions"][1]["id"]
    src, _ = get(viewer, "/api/v2/dagSources/etl")
    assert src == {"content": "v2", "dag_id": "etl", "version_number": 2, "dag_display_name": "etl"}
    old, _ = get(viewer, "/api/v2/dagSources/etl", "version_number=1")
    assert old["content"] == "v1" and old["version_number"] == 1
    text = viewer.simulate_get("/api/v2/dagSources/etl", headers={"Accept": "text/plain"})
    assert text.status_code == 200 and text.text == "v2" and text.headers["content-type"].startswith("text/plain")
    assert viewer.simulate_get("/api/v2/dagSources/etl", query_string="version_number=9").status_code == 404
    assert viewer.simulate_get("/api/v2/dags/etl/dagVersions/9").status_code == 404
    assert viewer.simulate_get("/api/v2/dagSources/etl", headers={"Accept": "image/png"}).status_code == 406
    everything, _ = get(viewer, "/api/v2/dags/~/dagVersions")
    assert everything["total_entries"] == 2


def test_tasks(api: ApiHarness, viewer: Any) -> None:
    seed_three(api)
    body, _ = get(viewer, "/api/v2/dags/etl_daily/tasks")
    assert [t["task_id"] for t in body["tasks"]] == ["first", "second"]
    first = body["tasks"][0]
    assert first["downstream_task_ids"] == ["second"]
    assert first["retry_delay"] == {"__type": "TimeDelta", "days": 0, "seconds": 30, "microseconds": 0}
    assert first["extra_links"] == [] and first["operator_name"] == "CommandTask"
    desc, _ = get(viewer, "/api/v2/dags/etl_daily/tasks", "order_by=-task_id")
    assert [t["task_id"] for t in desc["tasks"]] == ["second", "first"]
    one, _ = get(viewer, "/api/v2/dags/etl_daily/tasks/second")
    assert one["downstream_task_ids"] == []
    assert viewer.simulate_get("/api/v2/dags/etl_daily/tasks/nope").status_code == 404
    bad = viewer.simulate_get("/api/v2/dags/etl_daily/tasks", query_string="order_by=secret")
    assert bad.status_code == 400


def test_tags_warnings_stats(api: ApiHarness, viewer: Any) -> None:
    seed_three(api)
    api.seed_dag("pooled", pool="gpu")
    tags, _ = get(viewer, "/api/v2/dagTags")
    assert tags == {"tags": ["etl", "prod"], "total_entries": 2}
    assert get(viewer, "/api/v2/dagTags", "tag_name_pattern=PR&order_by=-name")[0]["tags"] == ["prod"]
    assert get(viewer, "/api/v2/dagTags", "tag_name_prefix_pattern=")[0]["total_entries"] == 2
    warnings, _ = get(viewer, "/api/v2/dagWarnings")
    assert [(w["dag_id"], w["warning_type"]) for w in warnings["dag_warnings"]] == [("pooled", "non-existent pool")]
    assert "gpu" in warnings["dag_warnings"][0]["message"]
    assert get(viewer, "/api/v2/dagWarnings", "dag_id=etl_daily")[0]["total_entries"] == 0
    assert get(viewer, "/api/v2/dagWarnings", "dag_id=pooled")[0]["total_entries"] == 1
    from leoflow.domain.records import Pool

    api.repos.pools.create(Pool(name="gpu", slots=2))
    assert get(viewer, "/api/v2/dagWarnings")[0]["total_entries"] == 0
    stats, _ = get(viewer, "/api/v2/dagStats", "dag_ids=etl_daily&dag_ids=adhoc")
    by_dag = {d["dag_id"]: {s["state"]: s["count"] for s in d["stats"]} for d in stats["dags"]}
    assert by_dag["etl_daily"] == {"queued": 0, "running": 0, "success": 1, "failed": 1}
    assert by_dag["adhoc"]["running"] == 1
    assert get(viewer, "/api/v2/dagStats")[0]["total_entries"] == 4
    assert viewer.simulate_get("/api/v2/dagStats", query_string="dag_ids=ghost").status_code == 404


def test_pause_unpause_single_and_bulk_with_audit(api: ApiHarness) -> None:
    seed_three(api)
    user = api.client("user")
    resp = user.simulate_patch("/api/v2/dags/etl_daily", json={"is_paused": True})
    assert assert_spec(resp, "PATCH", "/api/v2/dags/etl_daily")["is_paused"] is True
    assert api.repos.dags.get("etl_daily").state.is_paused is True
    masked = user.simulate_patch("/api/v2/dags/etl_daily", json={"is_paused": False},
                                 query_string="update_mask=is_paused")
    assert masked.status_code == 200 and masked.json["is_paused"] is False
    bulk = user.simulate_patch("/api/v2/dags", json={"is_paused": True}, query_string="dag_id_pattern=r")
    body = assert_spec(bulk, "PATCH", "/api/v2/dags")
    assert sorted(ids(body)) == ["reports"] and body["dags"][0]["is_paused"] is True
    everything = user.simulate_patch("/api/v2/dags", json={"is_paused": False}, query_string="dag_id_pattern=~")
    assert assert_spec(everything, "PATCH", "/api/v2/dags")["total_entries"] == 3
    events, _ = get(api.client("viewer"), "/api/v2/eventLogs", "order_by=-when&limit=100")
    mine = [(e["event"], e["dag_id"], e["owner"]) for e in events["event_logs"]]
    assert ("patch_dag", "etl_daily", "user-user") in mine
    assert ("patch_dags", "reports", "user-user") in mine
    assert sum(1 for e in mine if e[0] == "patch_dags") == 4
    extra = next(e for e in events["event_logs"] if e["event"] == "patch_dag")["extra"]
    assert extra in ('{"is_paused":true}', '{"is_paused":false}')


def test_delete_dag(api: ApiHarness) -> None:
    seed_three(api)
    user = api.client("user")
    assert user.simulate_post("/api/v2/dags/etl_daily/favorite").status_code == 204
    busy = user.simulate_delete("/api/v2/dags/adhoc")
    assert busy.status_code == 409 and "still running" in busy.json["detail"]
    assert_spec(busy, "DELETE", "/api/v2/dags/adhoc")
    assert api.repos.dags.get("adhoc") is not None and api.repos.runs.get("adhoc", "r1") is not None
    assert api.client("viewer").simulate_delete("/api/v2/dags/etl_daily").status_code == 403

    done = user.simulate_delete("/api/v2/dags/etl_daily")
    assert_spec(done, "DELETE", "/api/v2/dags/etl_daily")
    assert done.status_code == 200
    assert api.repos.dags.get("etl_daily") is None and api.repos.dags.versions("etl_daily") == []
    assert api.repos.runs.get("etl_daily", "r1") is None and api.repos.runs.get("etl_daily", "r2") is None
    assert api.repos.task_instances.list_for_run("etl_daily", "r1") == []
    assert api.repos.favorites.for_user("user-user") == set()
    # gone at once from this process's lists (read-your-writes), other DAGs untouched
    assert ids(get(user, "/api/v2/dags")[0]) == ["adhoc", "reports"]
    ui = user.simulate_get("/ui/dags")
    assert [d["dag_id"] for d in ui.json["dags"]] == ["adhoc", "reports"]
    assert api.repos.runs.get("reports", "r1") is not None
    missing = user.simulate_get("/api/v2/dags/etl_daily")
    assert missing.status_code == 404
    again = user.simulate_delete("/api/v2/dags/etl_daily")
    assert again.status_code == 404 and again.json["detail"] == "Dag with id: etl_daily was not found"
    assert_spec(again, "DELETE", "/api/v2/dags/etl_daily")

    events, _ = get(api.client("viewer"), "/api/v2/eventLogs", "event=delete_dag")
    assert [(e["event"], e["dag_id"], e["owner"]) for e in events["event_logs"]] == \
        [("delete_dag", "etl_daily", "user-user")]
    assert events["event_logs"][0]["extra"] == '{"runs_deleted":2}'


def test_favorites_per_user(api: ApiHarness) -> None:
    api.seed_dag("etl")
    api.seed_dag("other")
    viewer, user = api.client("viewer"), api.client("user")
    resp = viewer.simulate_post("/api/v2/dags/etl/favorite")
    assert resp.status_code == 204 and resp.text == ""
    assert get(viewer, "/api/v2/dags/etl/details")[0]["is_favorite"] is True
    assert get(user, "/api/v2/dags/etl/details")[0]["is_favorite"] is False
    assert ids(get(viewer, "/api/v2/dags", "is_favorite=true")[0]) == ["etl"]
    assert ids(get(viewer, "/api/v2/dags", "is_favorite=false")[0]) == ["other"]
    assert get(user, "/api/v2/dags", "is_favorite=true")[0]["total_entries"] == 0
    assert viewer.simulate_post("/api/v2/dags/etl/unfavorite").status_code == 204
    assert get(viewer, "/api/v2/dags", "is_favorite=true")[0]["total_entries"] == 0
    missing = viewer.simulate_post("/api/v2/dags/nope/favorite")
    assert missing.status_code == 404
    assert_spec(missing, "POST", "/api/v2/dags/nope/favorite")


def test_import_errors(api: ApiHarness, viewer: Any) -> None:
    now = api.clock()
    api.repos.dags.apply(api.repos.dags.import_error_ops("dags-folder", "dags/broken.yaml",
                                                         "dags/broken.yaml:3:5: unknown key 'sheduel'", now),
                         what="seed")
    api.repos.dags.apply(api.repos.dags.import_error_ops("dags-folder", "dags/other.py", "Traceback ...", now),
                         what="seed")
    body, _ = get(viewer, "/api/v2/importErrors")
    assert body["total_entries"] == 2
    assert {e["filename"] for e in body["import_errors"]} == {"dags/broken.yaml", "dags/other.py"}
    assert get(viewer, "/api/v2/importErrors", "filename=dags/other.py")[0]["total_entries"] == 1
    assert get(viewer, "/api/v2/importErrors", "filename_pattern=BROKEN")[0]["total_entries"] == 1
    assert get(viewer, "/api/v2/importErrors", "filename=")[0]["total_entries"] == 2  # empty = unset
    ident = body["import_errors"][0]["import_error_id"]
    one, _ = get(viewer, f"/api/v2/importErrors/{ident}")
    assert one["import_error_id"] == ident
    assert viewer.simulate_get("/api/v2/importErrors/999999").status_code == 404
    assert viewer.simulate_get("/api/v2/importErrors/abc").status_code == 422


def test_dag_has_import_errors_flag(api: ApiHarness, viewer: Any) -> None:
    api.seed_dag("etl", fileloc="dags/etl.yaml")
    api.repos.dags.apply(api.repos.dags.import_error_ops("dags-folder", "dags/etl.yaml", "boom", api.clock()),
                         what="seed")
    dag, _ = get(viewer, "/api/v2/dags/etl")
    assert dag["has_import_errors"] is True
    assert get(viewer, "/api/v2/dags", "has_import_errors=true")[0]["total_entries"] == 1


def test_event_logs_filters(api: ApiHarness) -> None:
    seed_three(api)
    user = api.client("user")
    for paused in (True, False, True):
        user.simulate_patch("/api/v2/dags/etl_daily", json={"is_paused": paused})
        api.clock.advance(seconds=1)
    user.simulate_patch("/api/v2/dags/reports", json={"is_paused": True})
    viewer = api.client("viewer")
    all_events, _ = get(viewer, "/api/v2/eventLogs")
    assert all_events["total_entries"] == 4
    assert get(viewer, "/api/v2/eventLogs", "dag_id=reports")[0]["total_entries"] == 1
    assert get(viewer, "/api/v2/eventLogs", "dag_id_pattern=ETL")[0]["total_entries"] == 3
    assert get(viewer, "/api/v2/eventLogs", "excluded_events=patch_dag")[0]["total_entries"] == 0
    assert get(viewer, "/api/v2/eventLogs", "owner=user-user&included_events=patch_dag")[0]["total_entries"] == 4
    after, _ = get(viewer, "/api/v2/eventLogs", "after=2026-03-01T12:00:01.5Z")
    assert after["total_entries"] == 2
    ordered, _ = get(viewer, "/api/v2/eventLogs", "order_by=dag_id&order_by=-when")
    assert [e["dag_id"] for e in ordered["event_logs"]] == ["etl_daily"] * 3 + ["reports"]
    newest, _ = get(viewer, "/api/v2/eventLogs", "order_by=-when&limit=1")
    assert newest["event_logs"][0]["dag_id"] == "reports" and newest["total_entries"] == 4
    ident = newest["event_logs"][0]["event_log_id"]
    one, _ = get(viewer, f"/api/v2/eventLogs/{ident}")
    assert one["event"] == "patch_dag"
    for odd in ("12", "99999999999999999999999", "abc", "-5"):
        assert viewer.simulate_get(f"/api/v2/eventLogs/{odd}").status_code in (404, 422)


def test_version_config_providers(api: ApiHarness, viewer: Any) -> None:
    version = assert_spec(api.anon.simulate_get("/api/v2/version"), "GET", "/api/v2/version")
    import leoflow

    assert version["version"] == leoflow.__version__
    denied = viewer.simulate_get("/api/v2/config")
    assert denied.status_code == 403 and "chose not to expose" in denied.json["detail"]
    assert_spec(denied, "GET", "/api/v2/config")
    api.ctx.config.server.expose_config = True
    api.ctx.config.auth.jwt_secret = "super-secret-value-xxxxxxxxxxxxxxxxxxxxxx"
    body, result = get(viewer, "/api/v2/config")
    assert "super-secret-value" not in result.text
    auth = next(s for s in body["sections"] if s["name"] == "auth")
    assert {"key": "jwt_secret", "value": "< hidden >"} in auth["options"]
    only, _ = get(viewer, "/api/v2/config", "section=server")
    assert [s["name"] for s in only["sections"]] == ["server"]
    option, _ = get(viewer, "/api/v2/config/section/server/option/workers")
    assert option == {"sections": [{"name": "server", "options": [{"key": "workers", "value": "2"}]}]}
    text = viewer.simulate_get("/api/v2/config", headers={"Accept": "text/plain"})
    assert "[server]" in text.text and "super-secret-value" not in text.text
    assert viewer.simulate_get("/api/v2/config", query_string="section=nope").status_code == 404
    providers, _ = get(viewer, "/api/v2/providers")
    assert {"python-nomad", "py-consul", "hvac"} <= {p["package_name"] for p in providers["providers"]}
    jobs, _ = get(viewer, "/api/v2/jobs")
    assert jobs == {"jobs": [], "total_entries": 0}
