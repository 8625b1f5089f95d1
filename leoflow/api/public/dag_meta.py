"""``/api/v2/dagTags``, ``/api/v2/dagWarnings`` and ``/api/v2/dagStats``.

DAG warnings are computed, not stored: Leoflow knows one of Airflow's warning types for real —
a task naming a pool that does not exist ("non-existent pool"), which would leave the task
waiting forever. The warning's timestamp is the DAG's last parse time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.domain.states import DagRunState

WARNING_TYPES = ("asset conflict", "non-existent pool", "runtime varying value")


class DagTags:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        orders = dto.order_by(req, ("name",), "name")
        names = sorted({t for e in self.ctx.repos.dags.list() if e.summary for t in e.summary.tags},
                       reverse=orders[0].descending)
        for matcher in (dto.pattern_matcher(dto.query_str(req, "tag_name_pattern")),
                        dto.prefix_matcher(dto.query_str(req, "tag_name_prefix_pattern"))):
            if matcher is not None:
                names = [n for n in names if matcher(n)]
        resp.media = dto.collection("tags", page.slice(names), len(names))


def dag_warnings(ctx: AppContext) -> list[dict[str, Any]]:
    pools = {v.record.name for v in ctx.repos.pools.all()}
    out: list[dict[str, Any]] = []
    for entry in ctx.repos.dags.list():
        out.extend(dag_warnings_for(ctx, entry, pools))
    return out


class DagWarnings:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        orders = dto.order_by(req, ("dag_id", "warning_type", "message", "timestamp"), "dag_id")
        dag_id = dto.query_str(req, "dag_id")
        warning_type = dto.query_str(req, "warning_type")
        if warning_type is not None and warning_type not in WARNING_TYPES:
            raise problem.invalid("query.warning_type", f"Input should be one of {', '.join(WARNING_TYPES)}")
        if dag_id is not None:
            # One DAG (the DAG pages ask for theirs on every view): don't load every DAG.
            entry = self.ctx.repos.dags.get(dag_id)
            rows = dag_warnings_for(self.ctx, entry) if entry else []
        else:
            rows = dag_warnings(self.ctx)
        if warning_type is not None:
            rows = [w for w in rows if w["warning_type"] == warning_type]
        rows = dto.sort_rows(rows, orders, {k: (lambda w, k=k: w[k]) for k in ("dag_id", "warning_type", "message",
                                                                               "timestamp")})
        resp.media = dto.collection("dag_warnings", page.slice(rows), len(rows))


def dag_warnings_for(ctx: AppContext, entry: Any, pools: set[str] | None = None) -> list[dict[str, Any]]:
    """The warnings of one DAG; ``pools`` (known pool names) saves a lookup per pool when listing all."""
    if entry.state.is_stale or entry.latest is None:
        return []
    dag = ctx.repos.dags.dag(entry.state.dag_id)
    if dag is None:
        return []
    wanted = {t.pool for t in dag.tasks.values()} - {"default_pool"}
    if pools is None:
        pools = {p for p in wanted if ctx.repos.pools.get(p) is not None}
    missing = sorted(wanted - pools)
    if not missing:
        return []
    when: datetime = entry.state.last_parsed_time or entry.latest.created_at
    return [{"dag_id": dag.dag_id, "warning_type": "non-existent pool",
             "message": f"Dag '{dag.dag_id}' references non-existent pools: {missing!r}",
             "timestamp": dto.iso(when), "dag_display_name": dag.dag_id}]


class DagStats:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        dag_ids = dto.query_list(req, "dag_ids")
        known = {e.state.dag_id for e in self.ctx.repos.dags.list()}
        if dag_ids:
            unknown = [d for d in dag_ids if d not in known]
            if unknown:
                raise problem.not_found(f"Dag(s) not found: {', '.join(unknown)}")
            selected = list(dict.fromkeys(dag_ids))
        else:
            selected = sorted(known)
        counts = self.ctx.repos.runs.counts_by_state(selected)
        dags = [
            {
                "dag_id": dag_id,
                "dag_display_name": dag_id,
                "stats": [{"state": s.value, "count": int(counts.get(dag_id, {}).get(s.value, 0))}
                          for s in DagRunState],
            }
            for dag_id in selected
        ]
        resp.media = dto.collection("dags", dags, len(dags))


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/dagTags", DagTags(ctx))
    app.add_route("/api/v2/dagWarnings", DagWarnings(ctx))
    app.add_route("/api/v2/dagStats", DagStats(ctx))

