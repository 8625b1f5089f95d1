"""A small, realistic store for the /ui tests (and the browser tests): written through the real
repositories, the way the git sync and the scheduler write it.

``etl`` has two versions (v2 adds ``report``) and runs on both: a finished scheduled run (v1), a
failed manual run whose ``transform`` failed twice (try 1 in history), and a running run. ``idle``
is paused and has never run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.domain.dag import DAG, Param, Task
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState

T0 = datetime(2026, 2, 27, 0, 0, tzinfo=UTC)
S = TaskInstanceState


def etl_dag(version: int) -> DAG:
    tasks = {
        "extract": Task("extract", command=("echo", "extract"), doc_md="Pull rows from the source"),
        "transform": Task("transform", command=("echo", "transform"), upstream=frozenset({"extract"}), retries=1),
        "load": Task("load", command=("echo", "load"), upstream=frozenset({"transform"}), image="alpine:3"),
    }
    if version >= 2:
        tasks["report"] = Task("report", command=("echo", "report"), upstream=frozenset({"load"}))
    return DAG(dag_id="etl", tasks=tasks, description="Nightly ETL", schedule="@daily",
               start_date=T0 - timedelta(days=30), tags=("etl", "prod"), owner="data", fileloc="dags/etl.yaml",
               is_paused_upon_creation=False,
               params={"rows": Param("rows", default=10, schema={"type": "integer", "minimum": 1})})


def idle_dag() -> DAG:
    return DAG(dag_id="idle", tasks={"only": Task("only", command=("true",))}, schedule=None, tags=("misc",),
               fileloc="dags/idle.yaml", is_paused_upon_creation=True)


@dataclass
class Seeded:
    runs: dict[str, DagRun] = field(default_factory=dict)


def _ti(run: DagRun, task_id: str, state: TaskInstanceState | None, *, start: datetime | None = None,
        minutes: float | None = None, try_number: int = 1, version: int = 1, note: str | None = None) -> TaskInstance:
    end = start + timedelta(minutes=minutes) if start is not None and minutes is not None else None
    return TaskInstance(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, state=state,
                        try_number=try_number if state not in (None, S.UPSTREAM_FAILED, S.SKIPPED) else 0, max_tries=1,
                        start_date=start, end_date=end, queued_dttm=start - timedelta(seconds=5) if start else None,
                        scheduled_dttm=start - timedelta(seconds=10) if start else None,
                        hostname="agent-1" if start else None,
                        executor="agents", dag_version_number=version, note=note)


def seed(repos: Any, now: datetime) -> Seeded:
    dags = repos.dags
    dags.record_version(etl_dag(1), "# etl v1\n", bundle_name="dags-folder", bundle_version="a" * 40,
                        now=now - timedelta(days=2))
    dags.record_version(etl_dag(2), "# etl v2\nreport: true\n", bundle_name="dags-folder", bundle_version="b" * 40,
                        now=now - timedelta(days=1))
    dags.record_version(idle_dag(), "# idle\n", bundle_name="dags-folder", bundle_version="b" * 40,
                        now=now - timedelta(days=1))
    out = Seeded()

    d1 = T0
    ok = DagRun(dag_id="etl", run_id=f"scheduled__{d1.isoformat()}", run_type=DagRunType.SCHEDULED,
                state=DagRunState.SUCCESS, run_after=d1 + timedelta(days=1), dag_version_number=1,
                bundle_version="a" * 40, logical_date=d1, data_interval_start=d1, data_interval_end=d1,
                queued_at=d1 + timedelta(days=1), start_date=d1 + timedelta(days=1),
                end_date=d1 + timedelta(days=1, minutes=6), triggered_by="timetable")
    repos.runs.create(ok, [
        _ti(ok, "extract", S.SUCCESS, start=ok.start_date, minutes=1),
        _ti(ok, "transform", S.SUCCESS, start=ok.start_date + timedelta(minutes=1), minutes=3),
        _ti(ok, "load", S.SUCCESS, start=ok.start_date + timedelta(minutes=4), minutes=2),
    ])
    out.runs["ok"] = ok

    d2 = now - timedelta(hours=3)
    failed = DagRun(dag_id="etl", run_id=f"manual__{d2.isoformat()}", run_type=DagRunType.MANUAL,
                    state=DagRunState.FAILED, run_after=d2, dag_version_number=2, bundle_version="b" * 40,
                    logical_date=d2, data_interval_start=d2, data_interval_end=d2, queued_at=d2, start_date=d2,
                    end_date=d2 + timedelta(minutes=9), conf={"rows": 5}, triggered_by="ui",
                    triggering_user_name="admin-user", note="investigating")
    first_try = _ti(failed, "transform", S.FAILED, start=d2 + timedelta(minutes=1), minutes=2, version=2)
    repos.runs.create(failed, [
        _ti(failed, "extract", S.SUCCESS, start=d2, minutes=1, version=2),
        _ti(failed, "transform", S.FAILED, start=d2 + timedelta(minutes=5), minutes=3, try_number=2, version=2,
            note="bad input"),
        _ti(failed, "load", S.UPSTREAM_FAILED, version=2),
        _ti(failed, "report", S.UPSTREAM_FAILED, version=2),
    ])
    repos.store.txn(repos.task_instances.archive_ops([first_try]))
    out.runs["failed"] = failed

    d3 = now - timedelta(minutes=10)
    running = DagRun(dag_id="etl", run_id=f"manual__{d3.isoformat()}", run_type=DagRunType.MANUAL,
                     state=DagRunState.RUNNING, run_after=d3, dag_version_number=2, bundle_version="b" * 40,
                     logical_date=d3, data_interval_start=d3, data_interval_end=d3, queued_at=d3, start_date=d3,
                     triggered_by="rest_api")
    repos.runs.create(running, [
        _ti(running, "extract", S.SUCCESS, start=d3, minutes=1, version=2),
        replace(_ti(running, "transform", S.RUNNING, start=d3 + timedelta(minutes=1), version=2)),
        _ti(running, "load", None, version=2),
        _ti(running, "report", None, version=2),
    ])
    out.runs["running"] = running
    return out
