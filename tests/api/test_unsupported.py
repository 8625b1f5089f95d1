"""Features Leoflow lacks: reads are honest, schema-valid and empty; writes are 501 naming the feature."""

from __future__ import annotations

import pytest

from leoflow.api.public.unsupported import ROUTES
from tests.api.runs_helpers import get_ok, problem_of


def _concrete(template: str) -> str:
    return (template.replace("{dag_id}", "etl").replace("{dag_run_id}", "r").replace("{task_id}", "a")
            .replace("{map_index}", "-1").replace("{try_number}", "1").replace("{asset_id}", "1")
            .replace("{asset_alias_id}", "1").replace("{backfill_id}", "1").replace("{key}", "k")
            .replace("{file_token}", "tok"))


@pytest.mark.parametrize(("template", "resource"), ROUTES, ids=[t for t, _ in ROUTES])
def test_reads_are_empty_or_404_and_writes_are_501(client, template, resource):
    path = _concrete(template)
    if hasattr(resource, "on_get"):
        result = client.simulate_get(path)
        if result.status_code == 200:
            body = get_ok(client, path)
            assert body.get("total_entries", 0) == 0 and all(v == [] for k, v in body.items() if k != "total_entries")
        else:
            problem_of(result, 404, "GET", path)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        if not hasattr(resource, f"on_{method.lower()}"):
            continue
        result = client.simulate_request(method, path, json={})
        body = problem_of(result, 501, method, path)
        assert body["feature"] == resource.feature and "not available in Leoflow" in body["detail"]


def test_ui_home_screen_calls_answer(client):
    for path in ("/api/v2/assets/events?limit=6&order_by=-timestamp&timestamp_gte=2026-11-28T10:06:22.320Z"
                 "&timestamp_lte=2026-11-29T10:06:22.320Z",
                 "/api/v2/dags/~/dagRuns/~/hitlDetails?order_by=dag_id&order_by=run_after&state=deferred"
                 "&state=awaiting_input&response_received=false",
                 "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=50&offset=0"):
        get_ok(client, path)


def test_viewer_cannot_reach_the_501(viewer):
    result = viewer.simulate_post("/api/v2/backfills", json={})
    problem_of(result, 403, "POST", "/api/v2/backfills")
