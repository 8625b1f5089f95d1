"""Every run-side call the real Airflow 3.3.2 UI makes (recorded screen by screen) answers 200 with a
spec-valid body on seeded data: none may 404 (research: airflow_ui_endpoints.md)."""

from __future__ import annotations

from urllib.parse import quote

from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import get_ok

RUN = "manual__2026-03-01T12:00:00+00:00"
R = quote(RUN, safe="")
WINDOW = "run_after_gte=2026-02-28T10%3A07%3A23.422Z&run_after_lte=2026-03-02T10%3A07%3A23.422Z"

UI_CALLS = [
    "/api/v2/assets/events?limit=6&order_by=-timestamp&timestamp_gte=2026-02-28T10%3A06%3A22.320Z"
    "&timestamp_lte=2026-03-01T10%3A06%3A22.320Z",
    "/api/v2/assets/events?limit=10&order_by=-timestamp&source_dag_id=etl&timestamp_gte=2026-02-28T10%3A07%3A23.422Z"
    "&timestamp_lte=2026-03-01T10%3A07%3A23.422Z",
    "/api/v2/assets?limit=50&name_prefix_pattern=&offset=0",
    "/api/v2/connections?limit=50&offset=0&order_by=connection_id",
    "/api/v2/dags/~/dagRuns?limit=1&state=running&state=queued",
    "/api/v2/dags/~/dagRuns?cursor=&limit=50&order_by=-run_after",
    "/api/v2/dags/etl/dagRuns?limit=1&state=running&state=queued",
    f"/api/v2/dags/etl/dagRuns?limit=10&{WINDOW}&state=failed",
    "/api/v2/dags/etl/dagRuns?cursor=&limit=50&order_by=-run_after",
    f"/api/v2/dags/etl/dagRuns/{R}",
    f"/api/v2/dags/etl/dagRuns/{R}/hitlDetails?order_by=dag_id&order_by=run_after&order_by=created_at"
    "&order_by=task_display_name&state=deferred&state=awaiting_input&response_received=false",
    f"/api/v2/dags/etl/dagRuns/{R}/hitlDetails?task_id=extract",
    "/api/v2/dags/~/dagRuns/~/hitlDetails?order_by=dag_id&order_by=run_after&order_by=created_at"
    "&order_by=task_display_name&state=deferred&state=awaiting_input&response_received=false",
    "/api/v2/dags/~/dagRuns/~/hitlDetails?limit=50&offset=0",
    "/api/v2/dags/etl/dagRuns/~/hitlDetails?task_id=extract",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/links?map_index=-1",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/logs/1?map_index=-1",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/tries/1?map_index=-1",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/xcomEntries/return_value?deserialize=true&map_index=-1"
    "&stringify=false",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/-1",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances?cursor=&limit=50&order_by=-start_date",
    "/api/v2/dags/etl/dagRuns/~/taskInstances?limit=50&order_by=-run_after&task_id=extract",
    f"/api/v2/dags/etl/dagRuns/~/taskInstances?limit=50&{WINDOW}&state=failed&task_id=extract",
    f"/api/v2/dags/etl/dagRuns/~/taskInstances?order_by=-run_after&{WINDOW}&state=failed",
    "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=50&offset=0",
    "/api/v2/dags/~/dagRuns/~/taskInstances?cursor=&limit=50&order_by=-id",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/state-store?map_index=-1",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/xcomEntries?limit=50&offset=0",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/-1/tries",
    f"/api/v2/dags/etl/dagRuns/{R}/taskInstances/extract/dependencies?map_index=-1",
    "/api/v2/pools",
    "/api/v2/pools?limit=50&offset=0&order_by=name",
    "/api/v2/variables?limit=50&offset=0&order_by=key",
]


def test_every_run_side_ui_call_answers(api, client):
    api.seed_dag("etl", tasks=("extract", "load"))
    api.seed_run("etl", RUN, state="failed", ti_states={"extract": "success", "load": "failed"})
    api.repos.xcom.set(TIKey("etl", RUN, "extract"), "return_value", {"n": 1}, try_number=1, timestamp=api.clock())
    for path in UI_CALLS:
        get_ok(client, path)
