"""Executor reports applied to task instances: fenced by try number, XCom limits, lost tries."""

from __future__ import annotations

import json
from datetime import timedelta

from leoflow.domain.dag import Task
from leoflow.domain.states import TaskInstanceState as S
from leoflow.domain.try_events import MAX_XCOM_BYTES, Report, apply_report

from .builders import T0, ti

AT = T0 + timedelta(seconds=9)


def apply(t, report, task=None):  # type: ignore[no-untyped-def]
    return apply_report(t, report, task=task or Task("a", retries=1), dag_id="d", logical_date=T0)


def test_started_then_success_with_xcom() -> None:
    q = ti("a", S.QUEUED, try_number=1, max_tries=1, executor_ref="agents")
    r = apply(q, Report(1, "started", T0, hostname="h1", executor_ref="agent-7"))
    assert r.ti is not None and r.ti.state is S.RUNNING and r.ti.start_date == T0 and r.ti.executor_ref == "agent-7"
    assert apply(r.ti, Report(1, "started", T0)).ti is None
    done = apply(r.ti, Report(1, "success", AT, exit_code=0, xcom_return=json.dumps({"rows": 3})))
    assert done.ti is not None and done.ti.state is S.SUCCESS and done.ti.executor_ref is None
    assert done.ti.end_date == AT and done.xcom == ("return_value", {"rows": 3})


def test_stale_reports_are_dropped() -> None:
    running = ti("a", S.RUNNING, try_number=2)
    assert "stale" in apply(running, Report(1, "success", AT)).why
    marked = ti("a", S.SUCCESS, try_number=2)
    assert apply(marked, Report(2, "failed", AT)).ti is None


def test_failure_retries_then_fails() -> None:
    running = ti("a", S.RUNNING, try_number=1, max_tries=1, start_date=T0)
    r = apply(running, Report(1, "failed", AT, exit_code=3))
    assert r.ti is not None and r.ti.state is S.UP_FOR_RETRY and r.ti.reason == "exit code 3"
    assert r.ti.next_retry_at == AT + timedelta(minutes=5)
    second = apply(ti("a", S.RUNNING, try_number=2, max_tries=1), Report(2, "failed", AT, reason="boom"))
    assert second.ti is not None and second.ti.state is S.FAILED and second.ti.reason == "boom"


def test_xcom_over_256_kib_fails_the_task() -> None:
    big = json.dumps("x" * MAX_XCOM_BYTES)
    r = apply(ti("a", S.RUNNING, try_number=1, max_tries=0), Report(1, "success", AT, xcom_return=big),
              task=Task("a"))
    assert r.ti is not None and r.ti.state is S.FAILED and "over the limit" in (r.ti.reason or "")
    bad = apply(ti("a", S.RUNNING, try_number=1), Report(1, "success", AT, xcom_return="{nope"), task=Task("a"))
    assert bad.ti is not None and bad.ti.state is S.FAILED and "not valid JSON" in (bad.ti.reason or "")


def test_lost_does_not_spend_a_retry() -> None:
    r = apply(ti("a", S.RUNNING, try_number=1, max_tries=0), Report(1, "lost", AT, reason="agent gone"),
              task=Task("a"))
    assert r.ti is not None and r.ti.state is S.UP_FOR_RETRY and r.ti.max_tries == 1 and r.ti.next_retry_at == AT
    assert r.ti.reason == "lost: agent gone"
