"""A wake-up that keeps failing backs off exponentially (one log line per attempt) and recovers."""

from __future__ import annotations

import logging

import pytest

from leoflow.domain.dag import Task
from leoflow.domain.states import DagRunState
from leoflow.scheduler.loop import Options

from .conftest import Rig, dag_of, marker, py


def _delays(caplog: pytest.LogCaptureFixture, message: str) -> list[float]:
    return [r.retry_in for r in caplog.records if r.getMessage() == message]  # type: ignore[attr-defined]


def test_a_failing_wake_up_backs_off_and_resets_when_it_works_again(rig: Rig,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="leoflow.scheduler")
    dag = dag_of("bug", Task("t", command=py(marker("t"))))
    rig.publish(dag)
    # A bad value that only the decision phase trips over (a TypeError there: a bug, not a run's fault).
    options = Options(executor_name="local", parallelism="many")  # type: ignore[arg-type]
    svc = rig.service(options=options)
    run = rig.trigger(dag)
    rig.wait_for("three failed wake-ups",
                 lambda: svc.metrics.sample("leoflow_scheduler_store_errors_total", {"op": "wakeup_bug"}) >= 3)
    options.parallelism = 32  # what a SIGHUP reload does
    assert rig.wait_run("bug", run.run_id).state is DagRunState.SUCCESS
    delays = _delays(caplog, "wake-up failed")
    assert delays[:3] == [0.5, 1.0, 2.0]  # one line per attempt, each wait twice the last
    rig.wait_for("the backoff to reset", lambda: svc.failures == 0)


def test_a_corrupt_record_backs_off_instead_of_retrying_twice_a_second(rig: Rig,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="leoflow.scheduler")
    key = rig.repos.dags.state_key("broken")
    rig.store.put(key, b"not json")
    svc = rig.service()
    rig.wait_for("two failed wake-ups", lambda: len(_delays(caplog, "store error in a wake-up; retrying")) >= 2)
    rig.store.delete(key)
    rig.wait_for("a good wake-up", lambda: svc.failures == 0)
    assert _delays(caplog, "store error in a wake-up; retrying")[:2] == [0.5, 1.0]


def test_backoff_is_capped(rig: Rig) -> None:
    from leoflow.scheduler.service import SchedulerService

    svc = SchedulerService(rig.repos, rig.executor(), max_backoff=30.0)
    assert [svc._backoff(30.0) for _ in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert svc.failures == 9
