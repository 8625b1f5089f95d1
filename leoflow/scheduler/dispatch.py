"""Turning a queued task instance into the executor's ``TryRequest``: render, then describe.

Rendering happens here, in the scheduler, right before the try is handed over, so the executor
and the agent only ever see final argv and env (never templates) and a template error fails the
try with a message naming the task and field, exactly once.

The rendered request is measured here too, before the try is written ``queued``: the executor
stores it as one value that later travels inside transactions (claim, finish with the terminal
event), so a request over ``MAX_REQUEST_BYTES`` could never run; it fails the try at once with
its size instead of leaving it queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.templating import RenderError, render_task
from leoflow.executors.port import TryKey, TryRequest
from leoflow.store.repos.agent_queue import request_to_json

# Below the store's 360 KiB transaction cap (leoflow/store/port.py), with room for the queue entry's
# own fields and a terminal event in the same transaction.
MAX_REQUEST_BYTES = 256 * 1024


class RequestTooLarge(RenderError):
    """The rendered command, args and env together are too big to hand to any executor."""


def request_size(request: TryRequest) -> int:
    """Bytes of the request as the executor stores it (JSON, so escaping counts)."""
    return len(json.dumps(request_to_json(request), separators=(",", ":")).encode())


def ti_try_key(ti: TaskInstance) -> TryKey:
    return TryKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)


def context_env(run: DagRun, ti: TaskInstance) -> dict[str, str]:
    """Airflow's ``AIRFLOW_CTX_*`` variables, so tasks can tell which try they are."""
    env = {
        "AIRFLOW_CTX_DAG_ID": ti.dag_id,
        "AIRFLOW_CTX_TASK_ID": ti.task_id,
        "AIRFLOW_CTX_DAG_RUN_ID": ti.run_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(ti.try_number),
    }
    if run.logical_date is not None:
        env["AIRFLOW_CTX_LOGICAL_DATE"] = run.logical_date.isoformat()
    return env


def build_request(
    dag: DAG,
    task: Task,
    run: DagRun,
    ti: TaskInstance,
    *,
    xcom: Callable[[str, str], Any] | None,
    variables: Callable[[str], str | None] | None = None,
) -> TryRequest:
    """Render ``task`` for this try; raises ``RenderError`` naming the task and field (or its size)."""
    rendered = render_task(dag, task, run, try_number=ti.try_number, map_index=ti.map_index, xcom=xcom,
                           variables=variables)
    env = {**context_env(run, ti), **rendered.env}
    timeout = task.execution_timeout.total_seconds() if task.execution_timeout is not None else None
    request = TryRequest(
        key=ti_try_key(ti),
        command=rendered.command,
        image=task.image,
        env=env,
        queue=task.queue,
        resources=task.resources,
        timeout_seconds=timeout,
        driver=task.driver,
        connections=task.connections,
        variables=task.variables,
        priority_weight=ti.priority_weight,
    )
    size = request_size(request)
    if size > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"task {task.task_id!r}: rendered request is {size} bytes, over the "
                              f"{MAX_REQUEST_BYTES // 1024} KiB limit (command, args and env together)")
    return request
