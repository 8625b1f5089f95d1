"""Records of runtime state: what the store persists and the API shows.

Field names follow Airflow 3's public API so response shaping stays a thin mapping. Timestamps
are timezone-aware UTC datetimes. Records are immutable; a state change is a new record written
by compare-and-set (see `leoflow.store`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState


@dataclass(frozen=True)
class DagVersion:
    """One version of one DAG: made exactly when its serialized form changes."""

    dag_id: str
    version_number: int
    bundle_name: str
    bundle_version: str | None  # the commit sha
    created_at: datetime
    content_hash: str
    fileloc: str


@dataclass(frozen=True)
class DagState:
    """The mutable, per-DAG facts that are not part of any version."""

    dag_id: str
    is_paused: bool
    is_stale: bool = False
    latest_version: int = 0
    bundle_name: str = ""
    last_parsed_time: datetime | None = None
    # When the scheduler will next create a scheduled run (None: not scheduled).
    next_dagrun_logical_date: datetime | None = None
    next_dagrun_data_interval_start: datetime | None = None
    next_dagrun_data_interval_end: datetime | None = None
    next_dagrun_run_after: datetime | None = None


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    run_type: DagRunType
    state: DagRunState
    run_after: datetime
    dag_version_number: int
    bundle_version: str | None = None
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    triggered_by: str = "cli"
    triggering_user_name: str | None = None
    # Counts the clears of this run; part of the run's identity for fencing stale decisions.
    clear_number: int = 0


@dataclass(frozen=True)
class TaskInstance:
    """The current state of one task in one run; its earlier tries live as `TaskTry` records."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    state: TaskInstanceState | None = None
    try_number: int = 0
    max_tries: int = 0
    start_date: datetime | None = None
    end_date: datetime | None = None
    queued_dttm: datetime | None = None
    scheduled_dttm: datetime | None = None
    next_retry_at: datetime | None = None
    hostname: str | None = None
    executor: str | None = None
    executor_ref: str | None = None  # agent id or Nomad job id of the live try
    pool: str = "default_pool"
    pool_slots: int = 1
    queue: str = "default"
    priority_weight: int = 1
    operator: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # why it failed / was skipped, shown in logs and the UI
    note: str | None = None
    dag_version_number: int = 0

    @property
    def duration(self) -> float | None:
        if self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).total_seconds()


@dataclass(frozen=True)
class TaskTry:
    """A finished (or superseded) try, kept in history after a retry or a clear."""

    instance: TaskInstance


@dataclass(frozen=True)
class XComEntry:
    dag_id: str
    run_id: str
    task_id: str
    key: str
    value: Any
    timestamp: datetime
    map_index: int = -1


@dataclass(frozen=True)
class Connection:
    connection_id: str
    conn_type: str
    description: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    extra: str | None = None
    team_name: str | None = None


@dataclass(frozen=True)
class Variable:
    key: str
    value: str
    description: str | None = None
    team_name: str | None = None


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str | None = None
    include_deferred: bool = False
    team_name: str | None = None


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str  # scrypt, see leoflow.api.auth
    role: str  # viewer | user | op | admin
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    created_at: datetime | None = None
    active: bool = True


@dataclass(frozen=True)
class AuditEvent:
    """Airflow's event log entry (`/api/v2/eventLogs`)."""

    event_log_id: int
    when: datetime
    event: str
    owner: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    logical_date: datetime | None = None
    extra: str | None = None


@dataclass(frozen=True)
class DagImportError:
    import_error_id: int
    filename: str
    bundle_name: str
    stack_trace: str
    timestamp: datetime
