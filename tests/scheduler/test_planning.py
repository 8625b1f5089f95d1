"""The pure plan: scheduling, trigger-rule cascades, retries, timeouts, completion, limits, priorities."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from leoflow.domain.dag import Task
from leoflow.domain.planning import (
    Candidate,
    Limits,
    choose_queued,
    effective_leaves,
    new_task_instances,
    plan,
    plan_run,
    runs_to_start,
    start_run,
)
from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S
from leoflow.domain.states import TriggerRule as TR

from .builders import T0, chain, make_dag, make_run, ti


def states(p) -> dict[str, S | None]:  # type: ignore[no-untyped-def]
    return {t.task_id: t.state for t in p.task_instances}


def test_new_run_schedules_roots_and_creates_missing_instances() -> None:
    dag = make_dag(*chain("a", "b", "c"))
    run = make_run()
    p = plan_run(dag, run, [], T0)
    assert states(p) == {"a": S.SCHEDULED, "b": None, "c": None}
    created = {c.new.task_id for c in p.changes if c.old is None}
    assert created == {"a", "b", "c"}
    a = next(t for t in p.task_instances if t.task_id == "a")
    assert a.try_number == 1 and a.scheduled_dttm == T0
    assert [t.task_id for t in p.ready] == ["a"]


def test_chain_progresses_and_run_succeeds_on_leaves() -> None:
    dag = make_dag(*chain("a", "b"))
    run = make_run()
    tis = new_task_instances(dag, run)
    p = plan_run(dag, run, [dataclasses.replace(tis[0], state=S.SUCCESS, try_number=1), tis[1]], T0)
    assert states(p)["b"] is S.SCHEDULED and p.new_run is None
    done = [dataclasses.replace(t, state=S.SUCCESS, try_number=1) for t in tis]
    p = plan_run(dag, run, done, T0 + timedelta(seconds=5))
    assert p.new_run is not None and p.new_run.state is DagRunState.SUCCESS
    assert p.new_run.end_date == T0 + timedelta(seconds=5)


def test_failure_cascades_upstream_failed_in_one_plan_and_fails_run() -> None:
    dag = make_dag(*chain("a", "b", "c", "d"))
    run = make_run()
    p = plan_run(dag, run, [ti("a", S.FAILED, try_number=1), ti("b"), ti("c"), ti("d")], T0)
    assert states(p) == {"a": S.FAILED, "b": S.UPSTREAM_FAILED, "c": S.UPSTREAM_FAILED, "d": S.UPSTREAM_FAILED}
    assert p.new_run is not None and p.new_run.state is DagRunState.FAILED


def test_run_outcome_is_leaf_based() -> None:
    # a fails, "handler" (one_failed) runs and succeeds, "final" (all_success on a) is upstream_failed.
    tasks = [Task("a"), Task("handler", upstream=frozenset({"a"}), trigger_rule=TR.ONE_FAILED)]
    dag = make_dag(*tasks)
    p = plan_run(dag, make_run(), [ti("a", S.FAILED, try_number=1), ti("handler", S.SUCCESS, try_number=1)], T0)
    assert p.new_run is not None and p.new_run.state is DagRunState.SUCCESS  # the only leaf succeeded
    # a leaf that was skipped counts as success
    p = plan_run(dag, make_run(), [ti("a", S.SUCCESS, try_number=1), ti("handler")], T0)
    assert states(p)["handler"] is S.SKIPPED
    assert p.new_run is not None and p.new_run.state is DagRunState.SUCCESS


def test_trigger_rules_in_a_diamond() -> None:
    tasks = [
        Task("ok"), Task("bad"),
        Task("one_failed", upstream=frozenset({"ok", "bad"}), trigger_rule=TR.ONE_FAILED),
        Task("all_done", upstream=frozenset({"ok", "bad"}), trigger_rule=TR.ALL_DONE),
        Task("nfmos", upstream=frozenset({"ok", "bad"}), trigger_rule=TR.NONE_FAILED_MIN_ONE_SUCCESS),
        Task("one_success", upstream=frozenset({"ok", "bad"}), trigger_rule=TR.ONE_SUCCESS),
    ]
    dag = make_dag(*tasks)
    # While "bad" is still running: one_success may already run, the others wait.
    p = plan_run(dag, make_run(), [ti("ok", S.SUCCESS, try_number=1), ti("bad", S.RUNNING, try_number=1)], T0)
    assert states(p) == {"ok": S.SUCCESS, "bad": S.RUNNING, "one_failed": None, "all_done": None, "nfmos": None,
                         "one_success": S.SCHEDULED}
    p = plan_run(dag, make_run(), [ti("ok", S.SUCCESS, try_number=1), ti("bad", S.FAILED, try_number=1)], T0)
    assert states(p) == {"ok": S.SUCCESS, "bad": S.FAILED, "one_failed": S.SCHEDULED, "all_done": S.SCHEDULED,
                         "nfmos": S.UPSTREAM_FAILED, "one_success": S.SCHEDULED}


def test_up_for_retry_keeps_downstream_waiting_then_retries_when_due() -> None:
    dag = make_dag(*chain("a", "b", retries=2, retry_delay=timedelta(seconds=30)))
    due = T0 + timedelta(seconds=30)
    tis = [ti("a", S.UP_FOR_RETRY, try_number=1, max_tries=2, next_retry_at=due), ti("b")]
    p = plan_run(dag, make_run(), tis, T0 + timedelta(seconds=10))
    assert states(p) == {"a": S.UP_FOR_RETRY, "b": None}
    assert p.wake_at == due and p.new_run is None
    p = plan_run(dag, make_run(), tis, due)
    a = next(t for t in p.task_instances if t.task_id == "a")
    assert a.state is S.SCHEDULED and a.try_number == 2
    assert [c.why for c in p.changes] == ["retry"]


def test_execution_timeout_cancels_and_fails_or_retries() -> None:
    timeout = timedelta(seconds=5)
    dag = make_dag(Task("a", execution_timeout=timeout))
    running = ti("a", S.RUNNING, try_number=1, start_date=T0, executor_ref="agent-1")
    p = plan_run(dag, make_run(), [running], T0 + timedelta(seconds=2))
    assert p.cancels == () and p.wake_at == T0 + timeout
    p = plan_run(dag, make_run(), [running], T0 + timeout)
    assert [c.key.try_number for c in p.cancels] == [1] and p.cancels[0].reason == "execution_timeout"
    a = p.task_instances[0]
    assert a.state is S.FAILED and a.executor_ref is None and "execution_timeout" in (a.reason or "")
    assert p.new_run is not None and p.new_run.state is DagRunState.FAILED
    retrying = make_dag(Task("a", execution_timeout=timeout, retries=1))
    p = plan_run(retrying, make_run(), [dataclasses.replace(running, max_tries=1)], T0 + timeout)
    assert p.task_instances[0].state is S.UP_FOR_RETRY and p.new_run is None


def test_dagrun_timeout_skips_unfinished_and_kills_live_tries() -> None:
    dag = make_dag(*chain("a", "b"), dagrun_timeout=timedelta(minutes=1))
    tis = [ti("a", S.RUNNING, try_number=1, executor_ref="x"), ti("b")]
    p = plan_run(dag, make_run(), tis, T0 + timedelta(minutes=1))
    assert p.new_run is None and p.wake_at == T0 + timedelta(minutes=1)
    p = plan_run(dag, make_run(), tis, T0 + timedelta(minutes=1, seconds=1))
    assert p.new_run is not None and p.new_run.state is DagRunState.FAILED
    assert states(p) == {"a": S.SKIPPED, "b": S.SKIPPED}
    assert [c.reason for c in p.cancels] == ["dagrun_timeout"]


def test_marked_or_cleared_instances_get_their_live_try_killed() -> None:
    dag = make_dag(*chain("a", "b"))
    tis = [ti("a", S.SUCCESS, try_number=2, executor_ref="agent-9"), ti("b", None, try_number=1, executor_ref="a2")]
    p = plan_run(dag, make_run(), tis, T0)
    assert sorted((c.key.task_id, c.key.try_number) for c in p.cancels) == [("a", 2), ("b", 1)]
    assert all(t.executor_ref is None for t in p.task_instances)
    # The cleared one is scheduled as a new try in the same plan.
    b = next(t for t in p.task_instances if t.task_id == "b")
    assert b.state is S.SCHEDULED and b.try_number == 2
    # Finished runs only get their cancels.
    p = plan_run(dag, make_run(DagRunState.SUCCESS), tis, T0)
    assert len(p.cancels) == 2 and p.new_run is None and p.ready == ()


def test_paused_dag_freezes_but_still_times_out() -> None:
    dag = make_dag(*chain("a", "b"))
    p = plan_run(dag, make_run(), [ti("a", S.SUCCESS, try_number=1), ti("b")], T0, paused=True)
    assert states(p)["b"] is None and p.new_run is None


def test_deadlock_fails_the_run() -> None:
    dag = make_dag(Task("a"), Task("b", upstream=frozenset({"a"})))
    # "a" removed: never finishes for b's purposes (removed counts as done but not success).
    p = plan_run(dag, make_run(), [ti("a", S.REMOVED), ti("b")], T0)
    assert states(p)["b"] is None
    assert p.new_run is not None and p.new_run.state is DagRunState.FAILED and "deadlock" in (p.new_run.note or "")


def test_setup_teardown_scope() -> None:
    tasks = [
        Task("setup", is_setup=True),
        Task("work", upstream=frozenset({"setup"})),
        Task("inner", upstream=frozenset({"work"})),
        Task("teardown", upstream=frozenset({"inner", "setup"}), is_teardown=True,
             trigger_rule=TR.ALL_DONE_SETUP_SUCCESS),
    ]
    dag = make_dag(*tasks)
    assert effective_leaves(dag) == {"inner"}
    # setup failed: work upstream_failed; inner (indirect setup) upstream_failed; teardown has a setup
    # upstream that did not succeed -> upstream_failed.
    p = plan_run(dag, make_run(), [ti("setup", S.FAILED, try_number=1)], T0)
    assert states(p) == {"setup": S.FAILED, "work": S.UPSTREAM_FAILED, "inner": S.UPSTREAM_FAILED,
                         "teardown": S.UPSTREAM_FAILED}
    # work failed, setup ok: teardown still runs (all done, its setup succeeded); run fails on the leaf.
    p = plan_run(dag, make_run(), [ti("setup", S.SUCCESS, try_number=1), ti("work", S.FAILED, try_number=1)], T0)
    assert states(p)["inner"] is S.UPSTREAM_FAILED and states(p)["teardown"] is S.SCHEDULED


def test_choose_queued_priority_pools_max_active_tasks_parallelism() -> None:
    dag = make_dag(Task("hi", priority_weight=10), Task("mid", priority_weight=5), Task("lo"),
                   Task("big", pool="p", pool_slots=2), Task("ghost", pool="nope"))
    run = make_run()
    tis = [dataclasses.replace(t, state=S.SCHEDULED, try_number=1) for t in new_task_instances(dag, run)]
    cands = [Candidate(t, run.run_after, 3) for t in tis]
    sel = choose_queued(cands, [], Limits(parallelism=10, pools={"p": 1}))
    assert [t.task_id for t in sel.chosen] == ["hi", "mid", "lo"]
    assert {(h.ti.task_id, h.why) for h in sel.held} == {("big", "pool_full"), ("ghost", "no_such_pool")}
    sel = choose_queued(cands, [], Limits(parallelism=2, pools={"p": 4}))
    assert [t.task_id for t in sel.chosen] == ["hi", "mid"]
    # Occupied slots count: a running task of the same run uses one of the 3 max_active_tasks.
    busy = [dataclasses.replace(tis[0], task_id="other", state=S.RUNNING)]
    sel = choose_queued(cands, busy, Limits(pools={"p": 4}))
    assert [t.task_id for t in sel.chosen] == ["hi", "mid"]


def test_older_run_first_at_equal_priority() -> None:
    new = ti("t", S.SCHEDULED, run_id="new")
    old = ti("t", S.SCHEDULED, run_id="old")
    sel = choose_queued([Candidate(new, T0 + timedelta(days=1), 16), Candidate(old, T0, 16)], [], Limits(parallelism=1))
    assert [t.run_id for t in sel.chosen] == ["old"]


def test_plan_single_run_with_limits_marks_queued() -> None:
    dag = make_dag(Task("a"), Task("b"), Task("c"), max_active_tasks=2)
    d = plan(dag, make_run(), [], T0, Limits(), executor="agents")
    assert len(d.queued) == 2 and all(t.state is S.QUEUED and t.executor_ref == "agents" for t in d.queued)
    assert [h.why for h in d.held] == ["max_active_tasks"]


def test_downstream_priority_weight_rule() -> None:
    dag = make_dag(*chain("a", "b", "c"))
    weights = {t.task_id: t.priority_weight for t in new_task_instances(dag, make_run())}
    assert weights == {"a": 3, "b": 2, "c": 1}


def test_runs_to_start_respects_max_active_runs_and_pause() -> None:
    r1 = make_run(DagRunState.QUEUED, run_id="1", run_after=T0)
    r2 = make_run(DagRunState.QUEUED, run_id="2", run_after=T0 + timedelta(hours=1))
    other = dataclasses.replace(make_run(DagRunState.QUEUED, run_id="x"), dag_id="e")
    started = runs_to_start([r2, r1, other], {"d": 1}, {"d": 2, "e": 1}, paused={"e"})
    assert [r.run_id for r in started] == ["1"]
    s = start_run(r1, T0)
    assert s.state is DagRunState.RUNNING and s.start_date == T0


def test_instances_of_tasks_missing_from_the_version_are_removed() -> None:
    dag = make_dag(Task("a"))
    p = plan_run(dag, make_run(), [ti("a", S.SUCCESS, try_number=1), ti("gone")], T0)
    assert states(p) == {"a": S.SUCCESS, "gone": S.REMOVED}
    assert p.new_run is not None and p.new_run.state is DagRunState.SUCCESS
