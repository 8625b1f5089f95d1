"""The DAG list pages join cached JSON rows: the bytes must equal what the JSON handler writes for
the shaped documents, and a row must change as soon as its DAG, runs or import error change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.api.public import _dagshape as shape
from leoflow.api.public import dags as public_dags
from leoflow.api.server import _dumps
from leoflow.api.ui import _common
from leoflow.api.ui import dags as ui_dags
from tests.api.conftest import ApiHarness
from tests.spec_validation import assert_spec

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def seed(api: ApiHarness) -> None:
    api.seed_dag("etl", tags=("prod", "étl"), schedule="@daily", description="Bäckerei \"quoted\" \u2603")
    api.seed_dag("reports", schedule="0 6 * * 1", fileloc="dags/reports.yaml")
    api.seed_dag("adhoc")
    for i in range(3):
        api.seed_run("etl", f"r{i}", state="success" if i else "failed", run_after=T0 + timedelta(days=i))
    api.seed_run("adhoc", "r0", state="running", run_after=T0)
    api.repos.dags.apply(api.repos.dags.import_error_ops("dags-folder", "dags/reports.yaml", "boom", api.clock()),
                         what="seed")


def expected_public(api: ApiHarness, limit: int = 100) -> str:
    entries = sorted(api.repos.dags.list(), key=lambda e: e.state.dag_id)
    failing = shape.import_error_files(api.ctx)
    docs = [shape.dag_response(e, has_import_errors=shape.entry_has_import_error(e, failing)) for e in entries]
    return _dumps({"dags": docs[:limit], "total_entries": len(entries)})


def expected_ui(api: ApiHarness, username: str, runs_limit: int = 10) -> str:
    entries = sorted((e for e in api.repos.dags.list() if e.latest is not None), key=lambda e: e.state.dag_id)
    latest = api.repos.runs.latest([e.state.dag_id for e in entries], n=runs_limit)
    errors = {e.filename for e in api.repos.dags.import_errors()}
    favorites = api.repos.favorites.for_user(username)
    docs = []
    for e in entries:
        doc = ui_dags.dag_fields(e, errors)
        doc.update({"asset_expression": None,
                    "latest_dag_runs": [_common.light_run(v) for v in latest.get(e.state.dag_id, [])],
                    "pending_actions": [], "is_favorite": e.state.dag_id in favorites})
        docs.append(doc)
    return _dumps({"total_entries": len(entries), "dags": docs})


def test_bodies_are_the_shaped_documents_and_follow_changes(api: ApiHarness) -> None:
    seed(api)
    user: Any = api.client("user")
    for _ in range(2):  # the second answer comes from the row caches
        body = user.simulate_get("/api/v2/dags")
        assert_spec(body, "GET", "/api/v2/dags")
        assert body.text == expected_public(api)
        assert body.headers["content-type"] == "application/json"
        ui = user.simulate_get("/ui/dags")
        assert ui.text == expected_ui(api, "user-user") and ui.headers["content-type"] == "application/json"

    # changes show at once: pause, a new run, a favorite, an import error cleared
    assert user.simulate_patch("/api/v2/dags/etl", json={"is_paused": True}).status_code == 200
    api.seed_run("reports", "new", state="success", run_after=T0 + timedelta(days=9))
    assert user.simulate_post("/api/v2/dags/reports/favorite").status_code == 204
    api.repos.dags.apply(api.repos.dags.clear_import_error_ops("dags-folder", "dags/reports.yaml"), what="fix")
    body = user.simulate_get("/api/v2/dags")
    assert body.text == expected_public(api)
    rows = {d["dag_id"]: d for d in body.json["dags"]}
    assert rows["etl"]["is_paused"] is True and rows["reports"]["has_import_errors"] is False
    ui = user.simulate_get("/ui/dags")
    assert ui.text == expected_ui(api, "user-user")
    rows = {d["dag_id"]: d for d in ui.json["dags"]}
    assert [r["run_id"] for r in rows["reports"]["latest_dag_runs"]] == ["new"] and rows["reports"]["is_favorite"]
    assert api.client("viewer").simulate_get("/ui/dags").text == expected_ui(api, "viewer-user")


def test_ui_list_orders_and_filters_on_last_runs_of_every_dag(api: ApiHarness) -> None:
    seed(api)
    user: Any = api.client("user")
    by_state = user.simulate_get("/ui/dags", query_string="order_by=-last_run_state&limit=2&dag_runs_limit=1")
    assert [d["dag_id"] for d in by_state.json["dags"]] == ["reports", "etl"]  # nulls first descending
    assert by_state.json["total_entries"] == 3
    assert [r["run_id"] for r in by_state.json["dags"][1]["latest_dag_runs"]] == ["r2"]
    failed = user.simulate_get("/ui/dags", query_string="last_dag_run_state=running")
    assert [d["dag_id"] for d in failed.json["dags"]] == ["adhoc"]
    paged = user.simulate_get("/ui/dags", query_string="limit=1&offset=1&order_by=-dag_id")
    assert [d["dag_id"] for d in paged.json["dags"]] == ["etl"] and paged.json["total_entries"] == 3
    assert [r["run_id"] for r in paged.json["dags"][0]["latest_dag_runs"]] == ["r2", "r1", "r0"]


def test_public_rows_follow_import_errors_without_a_dag_change(api: ApiHarness) -> None:
    seed(api)
    viewer: Any = api.client("viewer")
    flagged = viewer.simulate_get("/api/v2/dags", query_string="has_import_errors=true")
    assert [d["dag_id"] for d in flagged.json["dags"]] == ["reports"]
    assert public_dags._collection_json(api.ctx, [], 0) == _dumps({"dags": [], "total_entries": 0})
