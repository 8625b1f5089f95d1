"""The canonical serialized form of a DAG and its content hash.

This JSON form is what gets versioned: a DAG gets a new version exactly when ``dag_hash`` of its
serialized form changes, so the form must be canonical (every field present, defaults spelled
out, collections sorted, datetimes in UTC, durations in seconds) and ``dag_from_dict`` must invert
``dag_to_dict`` exactly. The Python loader's subprocess sends DAGs to the parent in this form too.

``FORMAT_VERSION`` is part of the form: changing the form deliberately changes every hash once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.domain.dag import DAG, Param, Resources, Task
from leoflow.domain.states import TriggerRule

FORMAT_VERSION = 1


class SerializedFormError(ValueError):
    """A stored or received serialized DAG does not have the shape this version writes."""


def _seconds(delta: timedelta | None) -> int | float | None:
    if delta is None:
        return None
    seconds = delta.total_seconds()
    return int(seconds) if seconds == int(seconds) else seconds


def _delta(value: Any, what: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SerializedFormError(f"{what}: expected seconds, got {value!r}")
    return timedelta(seconds=value)


def _required_delta(value: Any, what: str) -> timedelta:
    delta = _delta(value, what)
    if delta is None:
        raise SerializedFormError(f"{what}: expected seconds, got null")
    return delta


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise SerializedFormError("datetimes in a DAG must be timezone-aware")
    return value.astimezone(UTC).isoformat()


def _dt(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise SerializedFormError(f"{what}: expected an ISO 8601 datetime, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise SerializedFormError(f"{what}: datetime without a timezone: {value!r}")
    return parsed.astimezone(UTC)


def task_to_dict(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "image": task.image,
        "command": list(task.command),
        "args": list(task.args),
        "env": dict(sorted(task.env.items())),
        "upstream": sorted(task.upstream),
        "trigger_rule": str(task.trigger_rule),
        "retries": task.retries,
        "retry_delay": _seconds(task.retry_delay),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": _seconds(task.max_retry_delay),
        "execution_timeout": _seconds(task.execution_timeout),
        "pool": task.pool,
        "pool_slots": task.pool_slots,
        "priority_weight": task.priority_weight,
        "queue": task.queue,
        "resources": {
            "cpu": task.resources.cpu,
            "memory": task.resources.memory,
            "memory_max": task.resources.memory_max,
        },
        "connections": list(task.connections),
        "variables": list(task.variables),
        "owner": task.owner,
        "doc_md": task.doc_md,
        "is_setup": task.is_setup,
        "is_teardown": task.is_teardown,
        "driver": task.driver,
    }


def param_to_dict(param: Param) -> dict[str, Any]:
    return {"default": param.default, "schema": dict(param.schema), "description": param.description}


def dag_to_dict(dag: DAG) -> dict[str, Any]:
    """The canonical, JSON-compatible form of ``dag``."""
    return {
        "__version": FORMAT_VERSION,
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "description": dag.description,
        "schedule": dag.schedule,
        "start_date": _iso(dag.start_date),
        "end_date": _iso(dag.end_date),
        "timezone": dag.timezone,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "dagrun_timeout": _seconds(dag.dagrun_timeout),
        "tags": list(dag.tags),
        "owner": dag.owner,
        "params": {name: param_to_dict(p) for name, p in sorted(dag.params.items())},
        "default_args": dict(sorted(dag.default_args.items())),
        "doc_md": dag.doc_md,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "tasks": [task_to_dict(dag.tasks[t]) for t in sorted(dag.tasks)],
    }


def _get(data: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise SerializedFormError(f"{what}: missing key {key!r}") from None
    except TypeError:
        raise SerializedFormError(f"{what}: expected an object") from None


def task_from_dict(data: Mapping[str, Any]) -> Task:
    what = f"task {data.get('task_id')!r}" if isinstance(data, Mapping) else "task"
    res = _get(data, "resources", what)
    try:
        return Task(
            task_id=_get(data, "task_id", what),
            image=_get(data, "image", what),
            command=tuple(_get(data, "command", what)),
            args=tuple(_get(data, "args", what)),
            env=dict(_get(data, "env", what)),
            upstream=frozenset(_get(data, "upstream", what)),
            trigger_rule=TriggerRule(_get(data, "trigger_rule", what)),
            retries=_get(data, "retries", what),
            retry_delay=_required_delta(_get(data, "retry_delay", what), what),
            retry_exponential_backoff=_get(data, "retry_exponential_backoff", what),
            max_retry_delay=_delta(_get(data, "max_retry_delay", what), what),
            execution_timeout=_delta(_get(data, "execution_timeout", what), what),
            pool=_get(data, "pool", what),
            pool_slots=_get(data, "pool_slots", what),
            priority_weight=_get(data, "priority_weight", what),
            queue=_get(data, "queue", what),
            resources=Resources(cpu=_get(res, "cpu", what), memory=_get(res, "memory", what),
                                memory_max=_get(res, "memory_max", what)),
            connections=tuple(_get(data, "connections", what)),
            variables=tuple(_get(data, "variables", what)),
            owner=_get(data, "owner", what),
            doc_md=_get(data, "doc_md", what),
            is_setup=_get(data, "is_setup", what),
            is_teardown=_get(data, "is_teardown", what),
            driver=_get(data, "driver", what),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SerializedFormError):
            raise
        raise SerializedFormError(f"{what}: {exc}") from exc


def dag_from_dict(data: Mapping[str, Any]) -> DAG:
    """Rebuild a DAG from ``dag_to_dict`` output; anything else raises SerializedFormError."""
    if not isinstance(data, Mapping):
        raise SerializedFormError("serialized DAG: expected an object")
    what = f"serialized DAG {data.get('dag_id')!r}"
    version = data.get("__version")
    if version != FORMAT_VERSION:
        raise SerializedFormError(f"{what}: unsupported format version {version!r} (this build reads {FORMAT_VERSION})")
    tasks = [task_from_dict(t) for t in _get(data, "tasks", what)]
    params = {
        name: Param(name=name, default=_get(p, "default", what), schema=dict(_get(p, "schema", what)),
                    description=_get(p, "description", what))
        for name, p in _get(data, "params", what).items()
    }
    return DAG(
        dag_id=_get(data, "dag_id", what),
        tasks={t.task_id: t for t in tasks},
        fileloc=_get(data, "fileloc", what),
        description=_get(data, "description", what),
        schedule=_get(data, "schedule", what),
        start_date=_dt(_get(data, "start_date", what), f"{what} start_date"),
        end_date=_dt(_get(data, "end_date", what), f"{what} end_date"),
        timezone=_get(data, "timezone", what),
        catchup=_get(data, "catchup", what),
        max_active_runs=_get(data, "max_active_runs", what),
        max_active_tasks=_get(data, "max_active_tasks", what),
        dagrun_timeout=_delta(_get(data, "dagrun_timeout", what), what),
        tags=tuple(_get(data, "tags", what)),
        owner=_get(data, "owner", what),
        params=params,
        default_args=dict(_get(data, "default_args", what)),
        doc_md=_get(data, "doc_md", what),
        is_paused_upon_creation=_get(data, "is_paused_upon_creation", what),
    )


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Bytes that depend only on content: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def dag_hash(dag: DAG | Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: equal hashes mean the same DAG version."""
    data = dag_to_dict(dag) if isinstance(dag, DAG) else dag
    return hashlib.sha256(canonical_json(data)).hexdigest()
