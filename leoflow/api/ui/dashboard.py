"""The home page's counters: ``/ui/dashboard/dag_stats`` and ``/ui/dashboard/historical_metrics_data``.

Counts are real, from the run projection and the runs' task instances, with Airflow's semantics:
a DAG is "failed" when its latest run (by logical date) failed; running/queued count distinct
DAGs (``RunRepository.counts_by_state``); historical metrics count runs whose ``run_after``
falls in the window and the task instances of those runs. Like Airflow, a window with very many
runs counts task instances of the newest ``TI_SCAN_LIMIT`` runs only and says so with
``task_instance_counts_are_lower_bounds``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.ui import _common
from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, TaskInstanceState
from leoflow.store.repos.query import RunQuery

TI_SCAN_LIMIT = 2000
TI_STATE_KEYS = ("no_status", *(s.value for s in TaskInstanceState), "awaiting_input")


class DagStats:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        repos = self.ctx.repos
        live = [e for e in repos.dags.list() if not e.state.is_stale and e.latest is not None]
        live_ids = {e.state.dag_id for e in live}
        counts = repos.runs.counts_by_state(live_ids) if live_ids else {}
        resp.media = {
            "active_dag_count": sum(1 for e in live if not e.state.is_paused),
            "failed_dag_count": sum(1 for r in latest_by_logical_date(repos, live_ids).values()
                                    if r.state == DagRunState.FAILED),
            "running_dag_count": sum(1 for c in counts.values() if c.get(DagRunState.RUNNING.value)),
            "queued_dag_count": sum(1 for c in counts.values() if c.get(DagRunState.QUEUED.value)),
        }


def latest_by_logical_date(repos: Any, dag_ids: set[str]) -> dict[str, DagRun]:
    """Each DAG's run with the newest logical date (Airflow's ``failed`` count looks at that one).

    Read from the run list ordered ``-logical_date`` over all DAGs, which the projection keeps
    sorted between changes: one pass over cached order, no sort per home-page poll.
    """
    out: dict[str, DagRun] = {}
    if not dag_ids:
        return out
    for v in repos.runs.list(RunQuery(order_by="-logical_date")).items:
        r = v.record
        if r.logical_date is not None and r.dag_id in dag_ids and r.dag_id not in out:
            out[r.dag_id] = r
            if len(out) == len(dag_ids):
                break
    return out


class HistoricalMetrics:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        start = dto.query_datetime(req, "start_date")
        if start is None:
            raise problem.invalid("query.start_date", "field required")
        end = dto.query_datetime(req, "end_date") or _common.now(self.ctx)
        repos = self.ctx.repos
        page = repos.runs.list(RunQuery(run_after_gte=start, run_after_lte=end, order_by="-run_after"))
        run_counts = Counter(str(v.record.state) for v in page.items)
        scanned = page.items[:TI_SCAN_LIMIT]
        snapshots = repos.task_instances.list_for_runs([(v.record.dag_id, v.record.run_id) for v in scanned])
        ti_counts: Counter[str] = Counter()
        for snap in snapshots.values():
            for v in snap.current:
                ti_counts[str(v.record.state) if v.record.state is not None else "no_status"] += 1
        resp.media = {
            "dag_run_states": {s.value: run_counts.get(s.value, 0) for s in DagRunState},
            "task_instance_states": {k: ti_counts.get(k, 0) for k in TI_STATE_KEYS},
            "dag_run_counts_are_lower_bounds": False,
            "task_instance_counts_are_lower_bounds": len(page.items) > TI_SCAN_LIMIT,
        }


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/dashboard/dag_stats", DagStats(ctx))
    app.add_route("/ui/dashboard/historical_metrics_data", HistoricalMetrics(ctx))
