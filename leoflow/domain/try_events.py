"""What an executor's report about a try does to its task instance, fenced by try number.

Executors deliver at least once and possibly late (an agent reconnecting, a scheduler failing
over), so every report is checked against the task instance as stored: only a report for the
*current* try of a task instance that is still ``queued``/``running`` changes anything. A late
report of try 1 after try 2 began, or of a try a user already marked, is dropped here, and the
store's compare-and-set catches any race with a concurrent writer.

An infrastructure loss (``lost``: agent gone, allocation lost) ends the try but does not spend
the user's retries: ``max_tries`` grows by one and the retry is due at once, so a flaky node never
turns into a failed task (leoflow-lessons §8.1.3).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from leoflow.domain.dag import Task
from leoflow.domain.planning import LIVE_STATES, fail_try
from leoflow.domain.records import TaskInstance
from leoflow.domain.states import TaskInstanceState

MAX_XCOM_BYTES = 256 * 1024
XCOM_RETURN_KEY = "return_value"

OutcomeKind = Literal["started", "success", "failed", "lost"]


@dataclass(frozen=True)
class Report:
    try_number: int
    outcome: OutcomeKind
    at: datetime
    exit_code: int | None = None
    reason: str | None = None
    hostname: str | None = None
    executor_ref: str | None = None
    xcom_return: str | None = None  # JSON text the task wrote to $LEOFLOW_XCOM_RETURN


@dataclass(frozen=True)
class Applied:
    """The new task instance (None: the report changes nothing) and an XCom value to store."""

    ti: TaskInstance | None
    why: str
    xcom: tuple[str, Any] | None = None


def apply_report(
    ti: TaskInstance,
    report: Report,
    *,
    task: Task | None,
    dag_id: str,
    logical_date: datetime | None,
) -> Applied:
    if report.try_number != ti.try_number:
        return Applied(None, f"stale: report for try {report.try_number}, current try is {ti.try_number}")
    if ti.state not in LIVE_STATES:
        return Applied(None, f"stale: task instance is {ti.state or 'cleared'}, not queued/running")
    at = report.at
    if report.outcome == "started":
        if ti.state is TaskInstanceState.RUNNING:
            return Applied(None, "duplicate: already running")
        return Applied(
            dataclasses.replace(ti, state=TaskInstanceState.RUNNING, start_date=at, hostname=report.hostname,
                                executor_ref=report.executor_ref or ti.executor_ref),
            "started",
        )
    if report.outcome == "success":
        xcom: tuple[str, Any] | None = None
        if report.xcom_return is not None:
            size = len(report.xcom_return.encode())
            if size > MAX_XCOM_BYTES:
                reason = f"XCom return value is {size} bytes, over the limit of {MAX_XCOM_BYTES} bytes (256 KiB)"
                return Applied(fail_try(ti, task, at, reason, exit_code=report.exit_code, dag_id=dag_id,
                                        logical_date=logical_date), "xcom_too_large")
            try:
                xcom = (XCOM_RETURN_KEY, json.loads(report.xcom_return))
            except ValueError as exc:
                reason = f"XCom return file is not valid JSON: {exc}"
                return Applied(fail_try(ti, task, at, reason, exit_code=report.exit_code, dag_id=dag_id,
                                        logical_date=logical_date), "xcom_invalid")
        return Applied(
            dataclasses.replace(ti, state=TaskInstanceState.SUCCESS, start_date=ti.start_date or at, end_date=at,
                                exit_code=report.exit_code, reason=None, executor_ref=None,
                                hostname=ti.hostname or report.hostname),
            "success",
            xcom,
        )
    if report.outcome == "failed":
        reason = report.reason or (f"exit code {report.exit_code}" if report.exit_code is not None else "failed")
        return Applied(fail_try(ti, task, at, reason, exit_code=report.exit_code, dag_id=dag_id,
                                logical_date=logical_date), "failed")
    # lost: infrastructure, not the task; retry at once without spending a retry.
    reason = f"lost: {report.reason or 'the executor lost the try'}"
    if task is None:
        return Applied(dataclasses.replace(ti, state=TaskInstanceState.FAILED, end_date=at, reason=reason,
                                           executor_ref=None), "lost")
    return Applied(
        dataclasses.replace(ti, state=TaskInstanceState.UP_FOR_RETRY, start_date=ti.start_date or at, end_date=at,
                            reason=reason, executor_ref=None, max_tries=ti.max_tries + 1, next_retry_at=at,
                            exit_code=report.exit_code),
        "lost",
    )
