"""``/ui/*`` reads of Airflow features Leoflow does not have: backfills, asset-triggered runs,
teams, deadlines and partitioned runs.

The UI calls most of these on ordinary screens (backfills and deadline alerts on every DAG page,
deadlines on the home page), and a 404 or a wrong shape there shows an error box. So each answers
what is true for Leoflow, in the schema's shape: an empty collection after the same parameter
checks Airflow makes, 404 for an unknown DAG, and 404 for a single item that cannot exist.
"""

from __future__ import annotations

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.public import _runs
from leoflow.api.ui import _common

BACKFILL_ORDER = ("id", "dag_id", "from_date", "to_date", "created_at", "completed_at", "updated_at")
DEADLINE_ORDER = ("id", "deadline_time", "created_at", "last_updated_at", "missed", "dag_id", "dag_run_id",
                  "alert_name")
ALERT_ORDER = ("id", "created_at", "name", "interval", "reference_type")
TEAM_ORDER = ("name",)


class Backfills:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        dto.page(req)
        dto.order_by(req, BACKFILL_ORDER, "id")
        dto.query_bool(req, "active")
        dag_id = dto.query_str(req, "dag_id")
        if dag_id is not None and not dto.is_wildcard(dag_id):
            _common.require_dag(self.ctx, dag_id)
        resp.media = {"backfills": [], "total_entries": 0}


class NextRunAssets:
    """Leoflow DAGs are never asset-scheduled, so no asset events are pending for the next run."""

    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        _common.require_dag(self.ctx, dag_id)
        resp.media = {"asset_expression": None, "events": []}


class Teams:
    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        dto.page(req)
        dto.order_by(req, TEAM_ORDER, "name")
        resp.media = {"teams": [], "total_entries": 0}


class Deadlines:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        dto.page(req)
        dto.order_by(req, DEADLINE_ORDER, "id")
        dto.query_bool(req, "missed")
        for name in ("deadline_time", "last_updated_at"):
            dto.datetime_range(req, name)
        if not dto.is_wildcard(dag_id):
            _common.require_dag(self.ctx, dag_id)
            if not dto.is_wildcard(dag_run_id):
                _runs.require_run(self.ctx, dag_id, dag_run_id)
        resp.media = {"deadlines": [], "total_entries": 0}


class DeadlineAlerts:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        dto.page(req)
        dto.order_by(req, ALERT_ORDER, "id")
        dto.query_int(req, "version_number", minimum=1)
        _common.require_dag(self.ctx, dag_id)
        resp.media = {"deadline_alerts": [], "total_entries": 0}


class PartitionedRuns:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        dag_id = dto.query_str(req, "dag_id")
        dto.query_bool(req, "has_created_dag_run_id")
        if dag_id is not None and not dto.is_wildcard(dag_id):
            _common.require_dag(self.ctx, dag_id)
        resp.media = {"partitioned_dag_runs": [], "total": 0, "asset_expressions": None}


class PendingPartitionedRun:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        key = dto.query_str(req, "partition_key")
        if key is None:
            raise problem.invalid("query.partition_key", "field required")
        _common.require_dag(self.ctx, dag_id)
        raise problem.not_found(f"No pending partitioned Dag run for dag_id={dag_id} partition_key={key}: "
                                "Leoflow has no partitioned Dag runs")


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/backfills", Backfills(ctx))
    app.add_route("/ui/next_run_assets/{dag_id}", NextRunAssets(ctx))
    app.add_route("/ui/teams", Teams())
    app.add_route("/ui/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines", Deadlines(ctx))
    app.add_route("/ui/dags/{dag_id}/deadlineAlerts", DeadlineAlerts(ctx))
    app.add_route("/ui/partitioned_dag_runs", PartitionedRuns(ctx))
    app.add_route("/ui/pending_partitioned_dag_run/{dag_id}", PendingPartitionedRun(ctx))
