"""Write Leoflow DAGs in Python, close to Airflow's API.

    from datetime import datetime
    from leoflow.sdk import DAG, Param, Task

    with DAG("etl", schedule="@daily", start_date=datetime(2024, 1, 1), params={"n": Param(3, type="integer")}):
        extract = Task("extract", image="alpine:3.20", command=["echo", "extract"])
        load = Task("load", image="alpine:3.20", command=["echo", "{{ params.n }}"], retries=2)
        extract >> load

A Python DAG file is only ever evaluated in a sandboxed subprocess (``leoflow.dags.pyrunner``);
this module records what the file declares as the same document a YAML file would hold, and the
parent process validates it with the YAML builder. So the SDK stays thin: it checks structure
(which DAG a task belongs to, duplicate ids, what ``>>`` connects) and leaves field validation, with
file:line:col positions taken from the ``DAG(...)``/``Task(...)`` call, to the shared builder.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

__all__ = ["DAG", "Param", "Task", "chain"]

_MARK = "__mark__"
_registry: list[DAG] = []
_context: list[DAG] = []


def _caller_mark() -> list[int]:
    """Line and column of the user's call, skipping frames of this module."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    column = 1
    try:
        positions = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        if positions[2] is not None:
            column = positions[2] + 1
    except (IndexError, ValueError):
        pass
    return [frame.f_lineno, column]


def _json(value: Any) -> Any:
    """Python values to the document form the builder reads (the same as YAML would give)."""
    if isinstance(value, Param):
        return value.document()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds == int(seconds) else seconds
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot use a value of type {type(value).__name__} in a DAG: {value!r} "
                    "(use JSON values, dates, datetimes or timedeltas)")


class Param:
    """Airflow's ``Param(default, description=..., **json_schema)``."""

    def __init__(self, default: Any = None, description: str | None = None, **schema: Any) -> None:
        self.default = default
        self.description = description
        self.schema = schema

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {k: _json(v) for k, v in self.schema.items()}
        if self.default is not None:
            doc["default"] = _json(self.default)
        if self.description is not None:
            doc["description"] = self.description
        return doc


class DAG:
    """A DAG; use as a context manager so tasks created inside belong to it."""

    def __init__(self, dag_id: str, *, description: str | None = None, schedule: str | timedelta | None = None,
                 start_date: datetime | date | str | None = None, end_date: datetime | date | str | None = None,
                 timezone: str | None = None, catchup: bool | None = None, max_active_runs: int | None = None,
                 max_active_tasks: int | None = None, dagrun_timeout: timedelta | int | str | None = None,
                 tags: Sequence[str] | None = None, owner: str | None = None,
                 params: Mapping[str, Any] | None = None, default_args: Mapping[str, Any] | None = None,
                 doc_md: str | None = None, is_paused_upon_creation: bool | None = None) -> None:
        self.dag_id = dag_id
        self.tasks: dict[str, Task] = {}
        self._mark = _caller_mark()
        if isinstance(schedule, timedelta):
            seconds = schedule.total_seconds()
            schedule = f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds}s"
        given = {
            "description": description, "schedule": schedule, "start_date": start_date, "end_date": end_date,
            "timezone": timezone, "catchup": catchup, "max_active_runs": max_active_runs,
            "max_active_tasks": max_active_tasks, "dagrun_timeout": dagrun_timeout, "tags": tags, "owner": owner,
            "params": params, "default_args": default_args, "doc_md": doc_md,
            "is_paused_upon_creation": is_paused_upon_creation,
        }
        self._fields = {k: v for k, v in given.items() if v is not None}
        _registry.append(self)

    def __enter__(self) -> DAG:
        _context.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _context.remove(self)

    def add_task(self, task: Task) -> None:
        if task.task_id in self.tasks:
            raise ValueError(f"duplicate task_id {task.task_id!r} in DAG {self.dag_id!r}")
        self.tasks[task.task_id] = task

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {_MARK: self._mark, "dag_id": self.dag_id}
        doc.update({k: _json(v) for k, v in self._fields.items()})
        doc["tasks"] = [t.document() for t in self.tasks.values()]
        return doc


class Task:
    """A container (``image``) and/or command task; unset arguments fall back to ``default_args``."""

    def __init__(self, task_id: str, *, dag: DAG | None = None, image: str | None = None,
                 command: Sequence[str] | None = None, args: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, trigger_rule: str | None = None, retries: int | None = None,
                 retry_delay: timedelta | int | str | None = None, retry_exponential_backoff: bool | None = None,
                 max_retry_delay: timedelta | int | str | None = None,
                 execution_timeout: timedelta | int | str | None = None, pool: str | None = None,
                 pool_slots: int | None = None, priority_weight: int | None = None, queue: str | None = None,
                 resources: Mapping[str, int] | None = None, connections: Sequence[str] | None = None,
                 variables: Sequence[str] | None = None, owner: str | None = None, doc_md: str | None = None,
                 is_setup: bool | None = None, is_teardown: bool | None = None, driver: str | None = None) -> None:
        dag = dag or (_context[-1] if _context else None)
        if dag is None:
            raise ValueError(f"task {task_id!r} has no DAG: create it inside 'with DAG(...)' or pass dag=")
        self.task_id = task_id
        self.dag = dag
        self.upstream: list[str] = []
        self._mark = _caller_mark()
        given = {
            "image": image, "command": command, "args": args, "env": env, "trigger_rule": trigger_rule,
            "retries": retries, "retry_delay": retry_delay, "retry_exponential_backoff": retry_exponential_backoff,
            "max_retry_delay": max_retry_delay, "execution_timeout": execution_timeout, "pool": pool,
            "pool_slots": pool_slots, "priority_weight": priority_weight, "queue": queue, "resources": resources,
            "connections": connections, "variables": variables, "owner": owner, "doc_md": doc_md,
            "is_setup": is_setup, "is_teardown": is_teardown, "driver": driver,
        }
        self._fields = {k: v for k, v in given.items() if v is not None}
        dag.add_task(self)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {_MARK: self._mark, "task_id": self.task_id}
        doc.update({k: _json(v) for k, v in self._fields.items()})
        if self.upstream:
            doc["upstream"] = list(self.upstream)
        return doc

    # Dependencies, as in Airflow: ``a >> b`` means b runs after a; lists fan out and in.
    def set_upstream(self, other: Task | Iterable[Task]) -> None:
        for task in _tasks(other):
            if task.dag is not self.dag:
                raise ValueError(f"tasks {task.task_id!r} and {self.task_id!r} are in different DAGs")
            if task.task_id not in self.upstream:
                self.upstream.append(task.task_id)

    def set_downstream(self, other: Task | Iterable[Task]) -> None:
        for task in _tasks(other):
            task.set_upstream(self)

    def __rshift__(self, other: Task | Sequence[Task]) -> Task | Sequence[Task]:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Task | Sequence[Task]) -> Task | Sequence[Task]:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Sequence[Task]) -> Task:
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Sequence[Task]) -> Task:
        self.set_downstream(other)
        return self

    def __repr__(self) -> str:
        return f"<Task {self.task_id}>"


def _tasks(other: Task | Iterable[Task]) -> list[Task]:
    items = [other] if isinstance(other, Task) else list(other)
    for item in items:
        if not isinstance(item, Task):
            raise TypeError(f"dependencies connect Task objects, got {type(item).__name__}")
    return items


def chain(*tasks: Task | Sequence[Task]) -> None:
    """``chain(a, b, [c, d], e)``: each element runs after the previous one (Airflow's ``chain``)."""
    for left, right in itertools.pairwise(tasks):
        for task in _tasks(right):
            task.set_upstream(left)
