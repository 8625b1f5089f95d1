"""Shaping DAGs, tasks and DAG versions into Airflow 3.3.2's response schemas.

One place maps Leoflow's model (``DagEntry`` = state + latest version + summary, the serialized
``DAG``) to ``DAGResponse``, ``DAGDetailsResponse`` and ``TaskResponse``; field by field from the
official spec (``airflow-schemas.md``). Values Leoflow does not track are the honest neutral
value the schema allows (``null``, ``false``, ``0``), never an invented figure.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from leoflow.api import dto, problem
from leoflow.domain.dag import DAG, Param, Task
from leoflow.domain.timetable import describe
from leoflow.store.repos.dags import DagEntry

PARAM_CLASS = "airflow.sdk.definitions.param.Param"


def iso_duration(value: timedelta | None) -> str | None:
    """ISO 8601 duration as Pydantic writes a ``timedelta`` (``PT1H``, ``P1DT30M``, ``PT1.5S``)."""
    if value is None:
        return None
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    out = f"{sign}P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if seconds or (not days and not hours and not minutes):
        time += f"{seconds:g}S"
    return out + ("T" + time if time else "")


def file_token(bundle: str | None, fileloc: str) -> str:
    """Opaque token naming a DAG file (Airflow signs its own; ours only needs to round-trip)."""
    raw = f"{bundle or ''}\n{fileloc}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return dto.iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def param_dump(param: Param) -> dict[str, Any]:
    """Airflow's ``Param.dump()``: the trigger form reads ``value``, ``schema`` and ``description``."""
    return {
        "__class": PARAM_CLASS,
        "value": jsonable(param.default),
        "description": param.description,
        "schema": jsonable(dict(param.schema)),
        "source": None,
    }


def params_dump(dag: DAG) -> dict[str, Any]:
    return {name: param_dump(p) for name, p in dag.params.items()}


def dag_response(entry: DagEntry, *, has_import_errors: bool = False) -> dict[str, Any]:
    state, latest, summary = entry.state, entry.latest, entry.summary
    schedule = summary.schedule if summary else None
    tt = describe(schedule)
    fileloc = (summary.fileloc if summary else "") or (latest.fileloc if latest else "")
    bundle = state.bundle_name or (latest.bundle_name if latest else "") or None
    dag_id = state.dag_id
    return {
        "dag_id": dag_id,
        "dag_display_name": dag_id,
        "is_paused": state.is_paused,
        "is_stale": state.is_stale,
        "last_parsed_time": dto.iso(state.last_parsed_time),
        "last_parse_duration": None,
        "last_expired": None,
        "bundle_name": bundle,
        "bundle_version": latest.bundle_version if latest else None,
        "relative_fileloc": fileloc or None,
        "fileloc": fileloc,
        "description": summary.description if summary else None,
        "timetable_summary": tt.summary,
        "timetable_description": tt.description,
        "timetable_partitioned": False,
        "timetable_periodic": tt.periodic,
        "tags": [{"name": t, "dag_id": dag_id, "dag_display_name": dag_id} for t in (summary.tags if summary else ())],
        "max_active_tasks": summary.max_active_tasks if summary else 16,
        "max_active_runs": summary.max_active_runs if summary else 16,
        "max_consecutive_failed_dag_runs": 0,
        "has_task_concurrency_limits": summary.has_task_concurrency_limits if summary else False,
        "has_import_errors": has_import_errors,
        "next_dagrun_logical_date": dto.iso(state.next_dagrun_logical_date),
        "next_dagrun_data_interval_start": dto.iso(state.next_dagrun_data_interval_start),
        "next_dagrun_data_interval_end": dto.iso(state.next_dagrun_data_interval_end),
        "next_dagrun_run_after": dto.iso(state.next_dagrun_run_after),
        # Leoflow creates scheduled runs (periodic DAGs) and manual ones; it has no backfills yet.
        "allowed_run_types": ["scheduled", "manual"] if tt.periodic else ["manual"],
        "owners": list(summary.owners) if summary else [],
        "is_backfillable": False,
        "file_token": file_token(bundle, fileloc),
    }


def dag_details(entry: DagEntry, dag: DAG, *, has_import_errors: bool, active_runs: int,
                is_favorite: bool = False) -> dict[str, Any]:
    doc = dag_response(entry, has_import_errors=has_import_errors)
    latest = entry.latest
    doc.update({
        "catchup": dag.catchup,
        "dag_run_timeout": iso_duration(dag.dagrun_timeout),
        "asset_expression": None,
        "doc_md": dag.doc_md,
        "start_date": dto.iso(dag.start_date),
        "end_date": dto.iso(dag.end_date),
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "params": params_dump(dag),
        "render_template_as_native_obj": False,
        "template_search_path": None,
        "timezone": dag.timezone,
        "last_parsed": dto.iso(entry.state.last_parsed_time),
        "default_args": jsonable(dict(dag.default_args)),
        "rerun_with_latest_version": None,
        "owner_links": None,
        "is_favorite": is_favorite,
        "active_runs_count": active_runs,
        "concurrency": dag.max_active_tasks,
        "latest_dag_version": dto.dag_version_response(latest) if latest else None,
    })
    return doc


def downstream_ids(dag: DAG) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {t: [] for t in dag.tasks}
    for task in dag.tasks.values():
        for up in task.upstream:
            if up in out:
                out[up].append(task.task_id)
    return {k: sorted(v) for k, v in out.items()}


def task_response(dag: DAG, task: Task, downstream: Iterable[str]) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "task_display_name": task.task_id,
        "owner": task.owner,
        "start_date": dto.iso(dag.start_date),
        "end_date": dto.iso(dag.end_date),
        "trigger_rule": str(task.trigger_rule),
        "depends_on_past": False,
        "wait_for_downstream": False,
        "retries": task.retries,
        "queue": task.queue,
        "pool": task.pool,
        "pool_slots": task.pool_slots,
        "execution_timeout": dto.time_delta(task.execution_timeout),
        "retry_delay": dto.time_delta(task.retry_delay),
        # Airflow 3.3 made this a multiplier: 0 = no backoff, 2.0 = doubling (Leoflow's backoff doubles).
        "retry_exponential_backoff": 2.0 if task.retry_exponential_backoff else 0.0,
        "priority_weight": task.priority_weight,
        "weight_rule": "downstream",
        "ui_color": "#fff",
        "ui_fgcolor": "#000",
        "template_fields": ["command", "args", "env"],
        "downstream_task_ids": list(downstream),
        "doc_md": task.doc_md,
        "operator_name": task.operator,
        "params": params_dump(dag),
        "class_ref": {"module_path": "leoflow.domain.dag", "class_name": task.operator},
        "is_mapped": False,
        "extra_links": [],
    }


def require_entry(ctx: Any, dag_id: str) -> DagEntry:
    entry: DagEntry | None = ctx.repos.dags.get(dag_id)
    if entry is None:
        raise problem.not_found(f"The Dag with ID: `{dag_id}` was not found")
    return entry


def require_dag(ctx: Any, dag_id: str, version_number: int | None = None) -> DAG:
    dag: DAG | None = ctx.repos.dags.dag(dag_id, version_number)
    if dag is None:
        if version_number is None:
            raise problem.not_found(f"The Dag with ID: `{dag_id}` was not found")
        raise problem.not_found(f"The Dag with ID: `{dag_id}` and version {version_number} was not found")
    return dag


def import_error_files(ctx: Any) -> set[tuple[str, str]]:
    """(bundle, filename) of every file that currently fails to import."""
    return {(e.bundle_name, e.filename) for e in ctx.repos.dags.import_errors()}


def entry_has_import_error(entry: DagEntry, failing: set[tuple[str, str]]) -> bool:
    if not failing:
        return False
    fileloc = (entry.summary.fileloc if entry.summary else "") or (entry.latest.fileloc if entry.latest else "")
    bundle = entry.state.bundle_name or (entry.latest.bundle_name if entry.latest else "")
    return (bundle, fileloc) in failing or any(f == fileloc for _, f in failing)
