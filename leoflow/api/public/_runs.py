"""What the run-side endpoints share: lookups that 404 as Airflow does, response shaping, audit, CAS retry.

Shapes follow the 3.3.2 spec (``DAGRunResponse``, ``TaskInstanceResponse``,
``TaskInstanceHistoryResponse``, ``DagVersionResponse``); every timestamp goes out as UTC with
``Z`` (``dto.iso``). Reads of DAG versions are memoised per request (``Versions``) because a
page of 100 runs usually names one or two versions.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import falcon

from leoflow.api import audit as audit_log
from leoflow.api import dto, problem
from leoflow.domain.dag import DAG
from leoflow.domain.records import DagRun, DagVersion, TaskInstance
from leoflow.store.repos.base import TIKey, Versioned
from leoflow.store.repos.errors import Conflict, StaleTry

T = TypeVar("T")
CAS_ATTEMPTS = 5
TRIGGERED_BY = frozenset({"cli", "operator", "rest_api", "ui", "test", "timetable", "asset", "backfill"})


# ---------------------------------------------------------------------------------------------
# DAGs and their versions (read through the DAG repository)


def _dags(ctx: Any) -> Any:
    return ctx.repos.dags


def dag_entry(ctx: Any, dag_id: str) -> Any | None:
    """The DAG's entry (state, latest version, summary), or None when no such DAG is known."""
    return _dags(ctx).get(dag_id)


def require_dag_entry(ctx: Any, dag_id: str) -> Any:
    entry = dag_entry(ctx, dag_id)
    if entry is None:
        raise problem.not_found(f"Dag with dag_id: '{dag_id}' not found")
    return entry


def dag_version(ctx: Any, dag_id: str, version_number: int) -> DagVersion | None:
    return _dags(ctx).version(dag_id, version_number)  # type: ignore[no-any-return]


# Serialized DAG versions never change, so a parsed version can be kept for the process lifetime.
# Entries remember (weakly) which repositories they came from: an id() can be reused after GC.
_DAG_CACHE: OrderedDict[tuple[int, str, int], tuple[weakref.ref[Any], DAG]] = OrderedDict()
_DAG_CACHE_SIZE = 256
_DAG_CACHE_LOCK = threading.Lock()


def dag_at(ctx: Any, dag_id: str, version_number: int | None = None) -> DAG | None:
    """The parsed DAG of a version (the latest one when ``version_number`` is None or 0)."""
    if not version_number:
        entry = dag_entry(ctx, dag_id)
        if entry is None or entry.latest is None:
            return None
        version_number = entry.latest.version_number
    key = (id(ctx.repos), dag_id, version_number)
    with _DAG_CACHE_LOCK:
        cached = _DAG_CACHE.get(key)
        if cached is not None and cached[0]() is ctx.repos:
            _DAG_CACHE.move_to_end(key)
            return cached[1]
    dag = _dags(ctx).dag(dag_id, version_number)
    if dag is not None:
        with _DAG_CACHE_LOCK:
            _DAG_CACHE[key] = (weakref.ref(ctx.repos), dag)
            while len(_DAG_CACHE) > _DAG_CACHE_SIZE:
                _DAG_CACHE.popitem(last=False)
    return dag  # type: ignore[no-any-return]


def require_latest_dag(ctx: Any, dag_id: str) -> tuple[DAG, DagVersion]:
    entry = require_dag_entry(ctx, dag_id)
    if entry.latest is None:
        raise problem.not_found(f"Dag with dag_id: '{dag_id}' not found (it has no parsed version)")
    dag = dag_at(ctx, dag_id, entry.latest.version_number)
    if dag is None:
        raise problem.not_found(f"Dag with dag_id: '{dag_id}' not found (it has no parsed version)")
    return dag, entry.latest


def dag_for_run(ctx: Any, run: DagRun) -> DAG:
    """The DAG a run was created from (falls back to the latest version if that one is gone)."""
    dag = dag_at(ctx, run.dag_id, run.dag_version_number) or dag_at(ctx, run.dag_id)
    if dag is None:
        raise problem.not_found(f"Dag with dag_id: '{run.dag_id}' not found")
    return dag


def ti_uuid(ti: TaskInstance) -> str:
    name = f"leoflow:ti:{ti.dag_id}\x00{ti.run_id}\x00{ti.task_id}\x00{ti.map_index}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@dataclass
class Versions:
    """Per-request memo of ``DagVersionResponse`` documents."""

    ctx: Any
    cache: dict[tuple[str, int], dict[str, Any] | None] = field(default_factory=dict)

    def get(self, dag_id: str, version_number: int) -> dict[str, Any] | None:
        key = (dag_id, version_number)
        if key not in self.cache:
            record = dag_version(self.ctx, dag_id, version_number) if version_number > 0 else None
            self.cache[key] = None if record is None else version_response(record)
        return self.cache[key]


def version_response(v: DagVersion) -> dict[str, Any]:
    return dto.dag_version_response(v)


# ---------------------------------------------------------------------------------------------
# runs and task instances


def require_run(ctx: Any, dag_id: str, run_id: str) -> Versioned[DagRun]:
    """The run as stored now: for writes (its index is what a compare-and-set quotes)."""
    return _found(ctx.repos.runs.get(dag_id, run_id), dag_id, run_id)


def peek_run(ctx: Any, dag_id: str, run_id: str) -> Versioned[DagRun]:
    """The run for a read-only answer: from the run projection (no store request; this process's
    writes included, another's within one watch round), from the store when the projection has
    not seen it yet."""
    return _found(ctx.repos.runs.peek(dag_id, run_id), dag_id, run_id)


def _found(found: Versioned[DagRun] | None, dag_id: str, run_id: str) -> Versioned[DagRun]:
    if found is None:
        raise problem.not_found(f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found")
    return found


def require_ti(ctx: Any, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Versioned[TaskInstance]:
    found = ctx.repos.task_instances.get(TIKey(dag_id, run_id, task_id, map_index))
    if found is None:
        raise problem.not_found(
            f"The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` "
            f"and map_index: `{map_index}` was not found"
        )
    return found  # type: ignore[no-any-return]


def duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def run_response(run: DagRun, versions: Versions) -> dict[str, Any]:
    version = versions.get(run.dag_id, run.dag_version_number)
    return {
        "dag_run_id": run.run_id,
        "dag_id": run.dag_id,
        "logical_date": dto.iso(run.logical_date),
        "queued_at": dto.iso(run.queued_at),
        "start_date": dto.iso(run.start_date),
        "end_date": dto.iso(run.end_date),
        "duration": duration(run.start_date, run.end_date),
        "data_interval_start": dto.iso(run.data_interval_start),
        "data_interval_end": dto.iso(run.data_interval_end),
        "run_after": dto.iso(run.run_after),
        "last_scheduling_decision": None,
        "run_type": str(run.run_type),
        "state": str(run.state),
        "triggered_by": run.triggered_by if run.triggered_by in TRIGGERED_BY else None,
        "triggering_user_name": run.triggering_user_name,
        "conf": dict(run.conf) if run.conf is not None else None,
        "note": run.note,
        "dag_versions": [version] if version is not None else [],
        "bundle_version": run.bundle_version,
        "dag_display_name": run.dag_id,
        "partition_key": None,
        "partition_date": None,
    }


def _ti_common(ti: TaskInstance, run: DagRun | None, versions: Versions) -> dict[str, Any]:
    return {
        "task_id": ti.task_id,
        "dag_id": ti.dag_id,
        "dag_run_id": ti.run_id,
        "map_index": ti.map_index,
        "start_date": dto.iso(ti.start_date),
        "end_date": dto.iso(ti.end_date),
        "duration": ti.duration,
        "state": None if ti.state is None else str(ti.state),
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "task_display_name": ti.task_id,
        "dag_display_name": ti.dag_id,
        "hostname": ti.hostname,
        "unixname": None,
        "pool": ti.pool,
        "pool_slots": ti.pool_slots,
        "queue": ti.queue,
        "priority_weight": ti.priority_weight,
        "operator": ti.operator,
        "operator_name": ti.operator,
        "queued_when": dto.iso(ti.queued_dttm),
        "scheduled_when": dto.iso(ti.scheduled_dttm),
        "pid": None,
        "executor": ti.executor,
        "executor_config": "{}",
        "dag_version": versions.get(ti.dag_id, ti.dag_version_number or (run.dag_version_number if run else 0)),
    }


def ti_response(ti: TaskInstance, run: DagRun | None, versions: Versions) -> dict[str, Any]:
    doc = _ti_common(ti, run, versions)
    doc.update(
        {
            "id": ti_uuid(ti),
            "logical_date": dto.iso(run.logical_date) if run else None,
            "run_after": dto.iso(run.run_after) if run else dto.iso(ti.start_date),
            "note": ti.note,
            "rendered_map_index": None,
            "rendered_fields": {},
            "trigger": None,
            "triggerer_job": None,
        }
    )
    return doc


def ti_history_response(ti: TaskInstance, run: DagRun | None, versions: Versions) -> dict[str, Any]:
    return _ti_common(ti, run, versions)


# ---------------------------------------------------------------------------------------------
# writes


def user_name(req: falcon.Request) -> str | None:
    principal = getattr(req.context, "user", None)
    return getattr(principal, "username", None)


def audit(
    ctx: Any,
    req: falcon.Request,
    event: str,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    map_index: int | None = None,
    try_number: int | None = None,
    logical_date: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record one eventLogs entry for a write made through the API (``leoflow.api.audit.record``,
    which masks secret-looking values in ``extra``)."""
    audit_log.record(req, event, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                     try_number=try_number, logical_date=logical_date, extra=extra)


def with_cas_retry(attempt: Callable[[], T], what: str, attempts: int = CAS_ATTEMPTS) -> T:
    """Run a read-decide-write ``attempt`` again when its compare-and-set lost a race.

    Each attempt re-reads, so the decision is re-made on fresh state; after ``attempts`` lost races
    the caller gets a 409 naming what kept changing.
    """
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return attempt()
        except StaleTry as exc:
            last = exc
        except Conflict as exc:
            last = exc
    raise problem.conflict(f"{what}: the records kept changing while being updated; retry ({last})")


def sorted_tis(items: Iterable[TaskInstance]) -> list[TaskInstance]:
    return sorted(items, key=lambda t: (t.run_id, t.task_id, t.map_index))
