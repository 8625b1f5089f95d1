"""Small record builders shared by the scheduler's table tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_dag(*tasks: Task, **kw: Any) -> DAG:
    return DAG("d", {t.task_id: t for t in tasks}, **kw)


def chain(*ids: str, **kw: Any) -> list[Task]:
    out = []
    for i, tid in enumerate(ids):
        out.append(Task(tid, command=("true",), upstream=frozenset({ids[i - 1]}) if i else frozenset(), **kw))
    return out


def make_run(state: DagRunState = DagRunState.RUNNING, run_id: str = "r", **kw: Any) -> DagRun:
    base: dict[str, Any] = dict(dag_id="d", run_id=run_id, run_type=DagRunType.MANUAL, state=state, run_after=T0,
                                dag_version_number=1, logical_date=T0, start_date=T0)
    base.update(kw)
    return DagRun(**base)


def ti(task_id: str, state: TaskInstanceState | None = None, run_id: str = "r", **kw: Any) -> TaskInstance:
    return TaskInstance(dag_id="d", run_id=run_id, task_id=task_id, state=state, **kw)


def with_state(tis: list[TaskInstance], **states: TaskInstanceState | None) -> list[TaskInstance]:
    return [dataclasses.replace(t, state=states[t.task_id]) if t.task_id in states else t for t in tis]
