"""Per-run and per-DAG time views: the calendar, the Gantt chart and a run's duration statistics.

* ``/ui/calendar/{dag_id}``: runs per day (or hour) and state, by logical date, plus the runs the
  schedule will create for the rest of that year (``planned``), as Airflow's calendar service.
* ``/ui/gantt/{dag_id}/{run_id}``: every try of every task with its real times (earlier tries from
  the try history, so a cleared task shows both bars).
* ``/ui/dags/{dag_id}/dagRuns/{dag_run_id}/stats``: duration statistics of the DAG's last 100
  finished runs (Airflow's ``compute_duration_stats``).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.public import _runs
from leoflow.api.ui import _common
from leoflow.domain.states import DagRunState, TaskInstanceState
from leoflow.domain.timetable import DataInterval, TimetableError, next_dagrun_info
from leoflow.store.repos.query import RunQuery

MAX_PLANNED_RUNS = 2000


def _bucket(when: datetime, granularity: str) -> datetime:
    out = when.replace(minute=0, second=0, microsecond=0)
    return out.replace(hour=0) if granularity == "daily" else out


class Calendar:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        entry = _common.require_dag(self.ctx, dag_id)
        granularity = dto.query_str(req, "granularity") or "daily"
        if granularity not in ("daily", "hourly"):
            raise problem.invalid("query.granularity", f"{granularity!r} is not one of daily, hourly")
        # Leoflow has no partitioned runs: a partition_date filter matches nothing but is still validated.
        partition = dto.datetime_range(req, "partition_date")
        window = dto.datetime_range(req, "logical_date")
        runs = [v.record for v in self.ctx.repos.runs.for_dag(dag_id)]
        runs = [r for r in runs if r.logical_date is not None and window.contains(r.logical_date)]
        if not partition.empty:
            runs = []
        counts: Counter[tuple[datetime, str]] = Counter()
        for r in runs:
            counts[(_bucket(r.logical_date, granularity), str(r.state))] += 1  # type: ignore[arg-type]
        items = [{"date": dto.iso(d), "state": s, "count": c} for (d, s), c in sorted(counts.items())]
        items += self._planned(entry, runs, window, granularity)
        resp.media = {"total_entries": len(items), "dag_runs": items}

    def _planned(self, entry: Any, runs: list[Any], window: dto.Range, granularity: str) -> list[dict[str, Any]]:
        """The runs the schedule will make after the newest one, up to the end of its year."""
        if not runs:
            return []
        last = max(runs, key=lambda r: r.logical_date)
        if last.data_interval_start is None or last.data_interval_end is None:
            return []
        dag = _runs.dag_at(self.ctx, entry.state.dag_id)
        if dag is None:
            return []
        # Step the schedule from the last run as catchup would, so planned points match the scheduler.
        stepping = replace(dag, catchup=True)
        interval = DataInterval(last.data_interval_start, last.data_interval_end)
        year = last.data_interval_end.year
        planned: Counter[datetime] = Counter()
        try:
            for _ in range(MAX_PLANNED_RUNS):
                info = next_dagrun_info(stepping, last_automated=interval, now=last.data_interval_end)
                if info is None or info.logical_date.year != year or info.data_interval.end <= interval.end:
                    break
                interval = info.data_interval
                if window.contains(info.logical_date):
                    planned[_bucket(info.logical_date, granularity)] += 1
        except TimetableError:
            return []
        return [{"date": dto.iso(d), "state": "planned", "count": c} for d, c in sorted(planned.items())]


class Gantt:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, run_id: str) -> None:
        run = _runs.require_run(self.ctx, dag_id, run_id).record
        snap = self.ctx.repos.task_instances.snapshot(dag_id, run_id)
        dag = _runs.dag_at(self.ctx, dag_id, run.dag_version_number) or _runs.dag_at(self.ctx, dag_id)
        position = {t: i for i, t in enumerate(_common.task_order(dag))} if dag is not None else {}
        rows = []
        for v in snap.current:
            ti = v.record
            if ti.map_index != -1:
                continue
            tries = [t for t in snap.history.get((ti.task_id, ti.map_index), []) if t.try_number != ti.try_number]
            # An up_for_retry TI is already in the history as its failed try (Airflow skips it too).
            current = [] if ti.state == TaskInstanceState.UP_FOR_RETRY else [ti]
            rows.extend(tries + current)
        if not rows:
            raise problem.not_found(f"No task instances for dag_id={dag_id} run_id={run_id}")
        rows.sort(key=lambda t: (position.get(t.task_id, len(position)), t.task_id, t.try_number))
        resp.media = {
            "dag_id": dag_id,
            "run_id": run_id,
            "task_instances": [
                {
                    "task_id": t.task_id,
                    "task_display_name": t.task_id,
                    "try_number": t.try_number,
                    "state": str(t.state) if t.state is not None else None,
                    "scheduled_dttm": dto.iso(t.scheduled_dttm),
                    "queued_dttm": dto.iso(t.queued_dttm),
                    "start_date": dto.iso(t.start_date),
                    "end_date": dto.iso(t.end_date),
                    "is_group": False,
                    "is_mapped": False,
                }
                for t in rows
            ],
        }


def duration_stats(durations: list[float]) -> dict[str, Any] | None:
    """Airflow's ``compute_duration_stats``: mean, mode of whole seconds (None if all differ), percentiles."""
    if not durations:
        return None
    values = sorted(durations)
    counts = Counter(round(d) for d in values)
    top = max(counts.values())
    mode = float(min(k for k, v in counts.items() if v == top)) if top > 1 else None

    def pct(p: float) -> float:
        idx = (len(values) - 1) * p / 100
        lo = int(idx)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (idx - lo)

    return {"mean": round(statistics.mean(values), 3), "mode": round(mode, 3) if mode is not None else None,
            "p50": round(pct(50), 3), "p90": round(pct(90), 3), "p95": round(pct(95), 3), "p99": round(pct(99), 3)}


class RunStats:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        _runs.require_run(self.ctx, dag_id, dag_run_id)
        finished = self.ctx.repos.runs.list(RunQuery(
            dag_ids=[dag_id], states=[DagRunState.SUCCESS, DagRunState.FAILED], order_by="-run_after", limit=100,
        )).items
        durations = [d for v in finished
                     if (d := _runs.duration(v.record.start_date, v.record.end_date)) is not None]
        resp.media = {"duration": duration_stats(durations)}


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/calendar/{dag_id}", Calendar(ctx))
    app.add_route("/ui/gantt/{dag_id}/{run_id}", Gantt(ctx))
    app.add_route("/ui/dags/{dag_id}/dagRuns/{dag_run_id}/stats", RunStats(ctx))
