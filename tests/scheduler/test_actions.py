"""Clear and mark, as Airflow 3 does them: new tries with history, downstream/upstream, run effects."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leoflow.domain.actions import ActionError, clear, select_runs, set_run_state, set_task_instance_state
from leoflow.domain.dag import Task
from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S

from .builders import T0, chain, make_dag, make_run, ti

NOW = T0 + timedelta(hours=1)


def by_id(result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {t.task_id: t for t in result.task_instances}


def test_clear_failed_task_with_downstream_new_try_history_and_run_requeued() -> None:
    dag = make_dag(*chain("a", "b", "c", retries=2))
    run = make_run(DagRunState.FAILED, end_date=NOW)
    tis = [ti("a", S.FAILED, try_number=3, max_tries=2, end_date=NOW, exit_code=1),
           ti("b", S.UPSTREAM_FAILED), ti("c", S.UPSTREAM_FAILED)]
    r = clear(dag, [run], tis, now=NOW, task_ids=["a"], include_downstream=True)
    new = by_id(r)
    assert set(new) == {"a", "b", "c"}
    a = new["a"]
    assert a.state is None and a.try_number == 3 and a.max_tries == 5 and a.end_date is None  # type: ignore[attr-defined]
    assert [h.instance.try_number for h in r.history] == [3]
    assert r.history[0].instance.state is S.FAILED
    assert r.previous == tuple(sorted(tis, key=lambda t: t.task_id))
    (rr,) = r.runs
    assert rr.state is DagRunState.QUEUED and rr.clear_number == 1 and rr.queued_at == NOW
    assert rr.start_date is None and rr.end_date is None


def test_clear_only_failed_and_running_run_stays_running() -> None:
    dag = make_dag(*chain("a", "b"))
    run = make_run(DagRunState.RUNNING)
    tis = [ti("a", S.SUCCESS, try_number=1), ti("b", S.FAILED, try_number=1)]
    r = clear(dag, [run], tis, now=NOW, only_failed=True)
    assert list(by_id(r)) == ["b"] and r.runs == ()


def test_clear_running_task_keeps_executor_ref_and_records_try_as_failed() -> None:
    dag = make_dag(Task("a"))
    run = make_run()
    r = clear(dag, [run], [ti("a", S.RUNNING, try_number=1, executor_ref="agent-1")], now=NOW)
    (a,) = r.task_instances
    assert a.state is None and a.executor_ref == "agent-1"
    assert r.history[0].instance.state is S.FAILED and r.history[0].instance.end_date == NOW


def test_clear_upstream_and_setup_scope() -> None:
    dag = make_dag(Task("setup", is_setup=True), Task("x", upstream=frozenset({"setup"})),
                   Task("y", upstream=frozenset({"x"})),
                   Task("teardown", upstream=frozenset({"setup", "y"}), is_teardown=True))
    run = make_run(DagRunState.SUCCESS)
    tis = [ti(t, S.SUCCESS, try_number=1) for t in ("setup", "x", "y", "teardown")]
    assert set(by_id(clear(dag, [run], tis, now=NOW, task_ids=["y"]))) == {"setup", "y", "teardown"}
    assert set(by_id(clear(dag, [run], tis, now=NOW, task_ids=["y"], include_upstream=True))) == {"setup", "x", "y"}


def test_clear_never_run_instance_has_no_history_and_unknown_task_is_an_error() -> None:
    dag = make_dag(*chain("a", "b"))
    r = clear(dag, [make_run()], [ti("a", S.UPSTREAM_FAILED), ti("b")], now=NOW, task_ids=["a"])
    assert r.history == ()
    with pytest.raises(ActionError, match="task_ids: no such task in DAG 'd': zz"):
        clear(dag, [make_run()], [], now=NOW, task_ids=["zz"])


def test_clear_rebinds_version() -> None:
    dag = make_dag(Task("a"))
    run = make_run(DagRunState.SUCCESS)
    r = clear(dag, [run], [ti("a", S.SUCCESS, try_number=1)], now=NOW, dag_version_number=7)
    assert r.task_instances[0].dag_version_number == 7 and r.runs[0].dag_version_number == 7


def test_mark_success_clears_failed_downstream_and_requeues_run() -> None:
    dag = make_dag(*chain("a", "b", "c"))
    run = make_run(DagRunState.FAILED)
    tis = [ti("a", S.FAILED, try_number=1), ti("b", S.UPSTREAM_FAILED), ti("c", S.UPSTREAM_FAILED)]
    r = set_task_instance_state(dag, run, [run], tis, task_ids=["a"], state=S.SUCCESS, now=NOW)
    new = by_id(r)
    assert new["a"].state is S.SUCCESS and new["a"].end_date == NOW  # type: ignore[attr-defined]
    assert new["b"].state is None and new["c"].state is None  # type: ignore[attr-defined]
    assert r.runs[0].state is DagRunState.QUEUED


def test_mark_failed_with_downstream_and_unchanged_skipped() -> None:
    dag = make_dag(*chain("a", "b"))
    run = make_run()
    tis = [ti("a", S.RUNNING, try_number=1, executor_ref="ag", start_date=T0), ti("b", S.FAILED)]
    r = set_task_instance_state(dag, run, [run], tis, task_ids=["a"], state=S.FAILED, downstream=True, now=NOW)
    new = by_id(r)
    assert list(new) == ["a"]  # b already failed: unchanged
    assert new["a"].executor_ref == "ag" and new["a"].start_date == T0  # type: ignore[attr-defined]
    with pytest.raises(ActionError, match="new_state"):
        set_task_instance_state(dag, run, [run], tis, task_ids=["a"], state=S.RUNNING, now=NOW)


def test_mark_past_and_future_runs() -> None:
    dag = make_dag(Task("a"))
    runs = [make_run(DagRunState.SUCCESS, run_id=f"r{i}", logical_date=T0 + timedelta(days=i)) for i in range(3)]
    tis = [ti("a", S.FAILED, run_id=f"r{i}", try_number=1) for i in range(3)]
    assert [r.run_id for r in select_runs(runs, runs[1], past=True, future=False)] == ["r0", "r1"]
    r = set_task_instance_state(dag, runs[1], runs, tis, task_ids=["a"], state=S.SUCCESS, future=True, now=NOW)
    assert sorted(t.run_id for t in r.task_instances) == ["r1", "r2"]


def test_mark_run_success_failed_queued() -> None:
    dag = make_dag(*chain("a", "b", "c"))
    run = make_run()
    tis = [ti("a", S.SUCCESS, try_number=1), ti("b", S.RUNNING, try_number=1, executor_ref="x"), ti("c")]
    ok = set_run_state(dag, run, tis, state=DagRunState.SUCCESS, now=NOW)
    assert {t.task_id: t.state for t in ok.task_instances} == {"b": S.SUCCESS, "c": S.SUCCESS}
    assert ok.runs[0].state is DagRunState.SUCCESS and ok.runs[0].end_date == NOW
    bad = set_run_state(dag, run, tis, state=DagRunState.FAILED, now=NOW)
    assert {t.task_id: t.state for t in bad.task_instances} == {"b": S.FAILED, "c": S.SKIPPED}
    assert bad.runs[0].state is DagRunState.FAILED
    q = set_run_state(dag, make_run(DagRunState.FAILED), tis, state=DagRunState.QUEUED, now=NOW)
    assert q.task_instances == () and q.runs[0].state is DagRunState.QUEUED and q.runs[0].queued_at == NOW


def test_mark_run_success_spares_unfinished_teardown() -> None:
    dag = make_dag(Task("a"), Task("td", upstream=frozenset({"a"}), is_teardown=True))
    tis = [ti("a", S.RUNNING, try_number=1), ti("td")]
    r = set_run_state(dag, make_run(), tis, state=DagRunState.SUCCESS, now=NOW)
    assert [t.task_id for t in r.task_instances] == ["a"] and r.runs == ()
