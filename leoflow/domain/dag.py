"""The DAG model: what one DAG file declares, after parsing and validation.

Both authoring paths (YAML and the Python SDK) produce these objects, and their canonical
serialized form (`leoflow.domain.serialize`) is what is versioned, stored and shown. Instances are
immutable so a parsed DAG can be shared between threads and compared by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from leoflow.domain.states import TriggerRule

DEFAULT_POOL = "default_pool"
DEFAULT_QUEUE = "default"
DEFAULT_OWNER = "airflow"


@dataclass(frozen=True)
class Resources:
    """What a task asks of its executor; Nomad takes cpu in MHz and memory in MiB."""

    cpu: int = 100
    memory: int = 256
    memory_max: int | None = None


@dataclass(frozen=True)
class Param:
    """An Airflow Param: a default plus JSON-schema constraints (``type``, ``enum``, ``minimum`` ...)."""

    name: str
    default: Any = None
    schema: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class Task:
    task_id: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    upstream: frozenset[str] = frozenset()
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay: timedelta = timedelta(minutes=5)
    retry_exponential_backoff: bool = False
    max_retry_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    priority_weight: int = 1
    queue: str = DEFAULT_QUEUE
    resources: Resources = field(default_factory=Resources)
    connections: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    owner: str = DEFAULT_OWNER
    doc_md: str | None = None
    # "setup"/"teardown" markers are what all_done_setup_success keys on; plain tasks have neither.
    is_setup: bool = False
    is_teardown: bool = False
    # Which runtime executes the task on Nomad: docker (default), exec or raw_exec.
    driver: str = "docker"

    @property
    def operator(self) -> str:
        """Airflow shows an operator name per task; ours are all container/command tasks."""
        return "ContainerTask" if self.image else "CommandTask"


@dataclass(frozen=True)
class DAG:
    dag_id: str
    tasks: Mapping[str, Task]
    description: str | None = None
    schedule: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    timezone: str = "UTC"
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int = 16
    dagrun_timeout: timedelta | None = None
    tags: tuple[str, ...] = ()
    owner: str = DEFAULT_OWNER
    params: Mapping[str, Param] = field(default_factory=dict)
    default_args: Mapping[str, Any] = field(default_factory=dict)
    doc_md: str | None = None
    is_paused_upon_creation: bool = True
    # Where it came from, relative to the bundle root; set by the loader.
    fileloc: str = ""

    def task(self, task_id: str) -> Task:
        return self.tasks[task_id]
