"""Seeding real records through the real repositories, for API tests (used via ``ApiHarness``).

    api.seed_dag("etl", tags=("prod",), schedule="@daily", tasks=("extract", "load"))
    api.seed_run("etl", "manual__1", state="running", ti_states={"extract": "success"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from leoflow.domain.dag import DAG, Param, Task
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState


def make_dag(
    dag_id: str,
    *,
    tasks: Sequence[str] = ("first", "second"),
    tags: Sequence[str] = (),
    schedule: str | None = None,
    description: str | None = None,
    owner: str = "airflow",
    params: Mapping[str, Param] | None = None,
    is_paused_upon_creation: bool = False,
    fileloc: str | None = None,
    pool: str = "default_pool",
    start_date: datetime | None = None,
) -> DAG:
    """A chain of tasks (each depends on the previous one)."""
    built: dict[str, Task] = {}
    previous: str | None = None
    for task_id in tasks:
        built[task_id] = Task(task_id=task_id, command=("echo", task_id), owner=owner, pool=pool,
                              upstream=frozenset({previous}) if previous else frozenset(),
                              retry_delay=timedelta(seconds=30))
        previous = task_id
    return DAG(
        dag_id=dag_id, tasks=built, tags=tuple(tags), schedule=schedule, description=description, owner=owner,
        params=dict(params or {}), is_paused_upon_creation=is_paused_upon_creation,
        fileloc=fileloc or f"dags/{dag_id}.yaml", start_date=start_date,
    )


def seed_dag(api: Any, dag_id: str, *, source: str | None = None, bundle_version: str | None = "abc123",
             when: datetime | None = None, **kw: Any) -> Any:
    dag = make_dag(dag_id, **kw)
    text = source if source is not None else f"dag_id: {dag_id}\n# tasks: {', '.join(dag.tasks)}\n"
    return api.repos.dags.record_version(dag, text, bundle_name="dags-folder", bundle_version=bundle_version,
                                         now=when or api.clock())


def seed_run(
    api: Any,
    dag_id: str,
    run_id: str,
    *,
    state: str = "success",
    run_after: datetime | None = None,
    run_type: str = "manual",
    ti_states: Mapping[str, str | None] | None = None,
    version_number: int = 1,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
) -> Any:
    at = run_after or api.clock()
    run = DagRun(
        dag_id=dag_id, run_id=run_id, run_type=DagRunType(run_type), state=DagRunState(state), run_after=at,
        dag_version_number=version_number, logical_date=at, data_interval_start=at, data_interval_end=at,
        queued_at=at, start_date=start_date or at,
        end_date=end_date if end_date is not None else (at + timedelta(minutes=1) if state in ("success", "failed")
                                                        else None),
    )
    tis = [
        TaskInstance(dag_id=dag_id, run_id=run_id, task_id=task_id,
                     state=TaskInstanceState(s) if s else None, try_number=1 if s else 0,
                     dag_version_number=version_number)
        for task_id, s in (ti_states or {}).items()
    ]
    return api.repos.runs.create(run, tis)
