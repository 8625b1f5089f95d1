"""Tries that can never reach the executor fail with the reason instead of staying queued forever."""

from __future__ import annotations

from datetime import timedelta

from leoflow.domain.dag import Task
from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S
from leoflow.executors.agents import AgentsExecutor

from .conftest import Rig, dag_of, marker, py


def test_a_request_that_renders_too_large_fails_its_try_with_the_size(rig: Rig) -> None:
    # Three fields of ~100 KB each: every field is fine on its own, the request is not.
    env = {f"BIG_{i}": "{{ 'x' * 100000 }}" for i in range(3)}
    dag = dag_of("huge", Task("t", command=py(marker("t")), env=env, retries=1,
                                  retry_delay=timedelta(0)))
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag)
    assert rig.wait_run("huge", run.run_id).state is DagRunState.FAILED
    ti = rig.tis("huge", run.run_id)["t"]
    assert ti.state is S.FAILED and ti.try_number == 2  # each try failed at once; none ran
    assert "rendered request is 3" in (ti.reason or "") and "over the 256 KiB limit" in (ti.reason or "")
    assert rig.executions() == {}
    assert svc.metrics.sample("leoflow_scheduler_decisions_total", {"kind": "render_failed"}) == 2


def test_a_submit_the_executor_can_never_accept_fails_the_try(rig: Rig) -> None:
    """The real agents executor refuses a try whose queue name cannot be a store key (InvalidKey)."""
    dag = dag_of("refused", Task("t", command=("true",), queue=""))
    rig.publish(dag)
    executor = AgentsExecutor(rig.store)
    svc = rig.service(executor)  # type: ignore[arg-type]
    run = rig.trigger(dag)
    assert rig.wait_run("refused", run.run_id).state is DagRunState.FAILED
    ti = rig.tis("refused", run.run_id)["t"]
    assert ti.state is S.FAILED and ti.try_number == 1
    assert (ti.reason or "").startswith("the executor cannot accept this try:") and "empty" in (ti.reason or "")
    assert svc.metrics.sample("leoflow_scheduler_decisions_total", {"kind": "submit_refused"}) == 1
    # Not counted as a transient dispatch failure (those are retried forever, without spending a try).
    assert svc.metrics.registry.get_sample_value("leoflow_scheduler_dispatch_failures_total") in (None, 0.0)


def test_a_runaway_template_fails_its_try_and_scheduling_goes_on(rig: Rig) -> None:
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    dag = dag_of("runaway", Task("bad", command=("echo", loops)), Task("good", command=py(marker("good"))))
    rig.publish(dag)
    rig.service()
    run = rig.trigger(dag)
    assert rig.wait_run("runaway", run.run_id).state is DagRunState.FAILED
    tis = rig.tis("runaway", run.run_id)
    assert tis["bad"].state is S.FAILED
    assert "cannot render command[1]: template does too much work" in (tis["bad"].reason or "")
    assert tis["good"].state is S.SUCCESS and rig.executions() == {"good.1": 1}
