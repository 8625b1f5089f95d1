"""The scheduler loop end to end on the real SQLite store with real local subprocesses."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from leoflow.domain import actions
from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import Pool
from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S
from leoflow.domain.states import TriggerRule as TR
from leoflow.domain.timetable import DagRunInfo, DataInterval
from leoflow.executors.port import TryKey, TryRequest
from leoflow.scheduler.loop import Options, Scheduler
from leoflow.scheduler.metrics import SchedulerMetrics
from leoflow.scheduler.signals import leader_key, nudge
from leoflow.store.election import LeaderElector, read_leader
from leoflow.store.repos.base import TIKey

from .conftest import Rig, dag_of, marker, py
from .local_executor import LocalProcessExecutor


def test_chain_runs_to_success_with_xcom_and_templating(rig: Rig) -> None:
    out = rig.tmp / "b.out"
    dag = dag_of(
        "chain",
        Task("a", command=py("import json,os;json.dump({'n': 41}, open(os.environ['LEOFLOW_XCOM_RETURN'],'w'))")),
        Task("b", upstream=frozenset({"a"}),
             command=py(f"import sys;open({str(out)!r},'w').write(' '.join(sys.argv[1:]))"),
             args=("{{ ti.xcom_pull(task_ids='a')['n'] + 1 }}", "{{ dag_run.conf['who'] }}", "{{ ti.try_number }}",
                   "{{ run_id }}")),
        Task("c", upstream=frozenset({"b"}), command=py("pass")),
    )
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag, conf={"who": "ann"})
    done = rig.wait_run("chain", run.run_id)
    assert done.state is DagRunState.SUCCESS and done.start_date is not None and done.end_date is not None
    tis = rig.tis("chain", run.run_id)
    assert {t: ti.state for t, ti in tis.items()} == {"a": S.SUCCESS, "b": S.SUCCESS, "c": S.SUCCESS}
    assert all(ti.try_number == 1 and ti.executor_ref is None for ti in tis.values())
    assert tis["a"].start_date is not None and tis["a"].end_date is not None
    assert out.read_text() == f"42 ann 1 {run.run_id}"
    xcom = rig.repos.xcom.get(TIKey("chain", run.run_id, "a"))
    assert xcom is not None and xcom.value == {"n": 41}

    m = svc.metrics
    assert m.sample("leoflow_scheduler_is_leader") == 1
    assert m.sample("leoflow_scheduler_wakeups_total", {"reason": "executor"}) >= 1
    assert m.sample("leoflow_scheduler_wakeup_duration_seconds_count") >= 3
    assert m.sample("leoflow_scheduler_decisions_total", {"kind": "queued"}) == 3
    assert m.sample("leoflow_scheduler_decisions_total", {"kind": "run_started"}) == 1
    assert m.sample("leoflow_scheduler_decisions_total", {"kind": "run_success"}) == 1
    assert m.sample("leoflow_scheduler_dispatch_latency_seconds_count") == 3
    rig.wait_for("gauges settle", lambda: m.sample("leoflow_scheduler_runs", {"state": "running"}) == 0)
    assert m.sample("leoflow_scheduler_pool_queue_depth", {"pool": "default_pool"}) == 0
    # Metrics are served over HTTP for Prometheus.
    port = m.serve("127.0.0.1:0")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
    assert "leoflow_scheduler_decisions_total" in body and "leoflow_scheduler_is_leader 1.0" in body


def test_failing_task_is_retried_then_succeeds_and_history_is_kept(rig: Rig) -> None:
    flaky = py("import os,sys;" + marker("flaky").replace(";f.close()", ";f.close();")
               + "sys.exit(3 if os.environ['AIRFLOW_CTX_TRY_NUMBER']=='1' else 0)")
    dag = dag_of("retry", Task("flaky", command=flaky, retries=2, retry_delay=timedelta(seconds=2)),
                 Task("after", upstream=frozenset({"flaky"}), command=py("pass")))
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag)
    # While waiting for the retry, the downstream task stays untouched.
    rig.wait_for("up_for_retry", lambda: rig.tis("retry", run.run_id)["flaky"].state is S.UP_FOR_RETRY)
    waiting = rig.tis("retry", run.run_id)
    assert waiting["after"].state is None and waiting["flaky"].reason == "exit code 3"
    assert waiting["flaky"].next_retry_at is not None
    m = svc.metrics
    rig.wait_for("gauges", lambda: m.sample("leoflow_scheduler_task_instances", {"state": "up_for_retry"}) == 1)
    assert m.sample("leoflow_scheduler_runs", {"state": "running"}) == 1
    assert m.sample("leoflow_scheduler_task_instances", {"state": "none"}) == 1
    done = rig.wait_run("retry", run.run_id)
    assert done.state is DagRunState.SUCCESS
    tis = rig.tis("retry", run.run_id)
    assert tis["flaky"].try_number == 2 and tis["flaky"].state is S.SUCCESS
    # The retry started no earlier than retry_delay after the first try ended.
    tries = rig.tries("retry", run.run_id, "flaky")
    assert [t.try_number for t in tries] == [1, 2]
    assert tries[0].exit_code == 3 and tries[0].end_date is not None
    assert tries[0].state is S.FAILED  # Airflow's history shows the retried try as failed
    assert tis["flaky"].start_date is not None and tis["flaky"].start_date >= tries[0].end_date + timedelta(seconds=2)
    assert rig.executions() == {"flaky.1": 1, "flaky.2": 1}
    assert svc.metrics.sample("leoflow_scheduler_decisions_total", {"kind": "retry"}) == 1


def test_execution_timeout_kills_the_process(rig: Rig) -> None:
    pidfile = rig.tmp / "sleeper.pid"
    # Generous timeouts: on a loaded 2-core machine Python can take a second to start the task.
    dag = dag_of("timeout", Task("sleeper", execution_timeout=timedelta(seconds=3),
                                 command=py(f"import os,time;open({str(pidfile)!r},'w').write(str(os.getpid()));"
                                            "time.sleep(60)")))
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag)
    done = rig.wait_run("timeout", run.run_id, timeout=20)
    assert done.state is DagRunState.FAILED
    ti = rig.tis("timeout", run.run_id)["sleeper"]
    assert ti.state is S.FAILED and "execution_timeout" in (ti.reason or "")
    pid = int(pidfile.read_text())
    rig.wait_for("the process to be gone", lambda: not _alive(pid), timeout=10)
    assert svc.metrics.sample("leoflow_scheduler_decisions_total", {"kind": "cancel"}) >= 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_trigger_rules_one_failed_all_done_none_failed_min_one_success(rig: Rig) -> None:
    both = frozenset({"ok", "bad"})
    dag = dag_of(
        "rules",
        Task("ok", command=py("pass")),
        Task("bad", command=py("import sys;sys.exit(1)")),
        Task("on_failure", upstream=both, trigger_rule=TR.ONE_FAILED, command=py("pass")),
        Task("cleanup", upstream=both, trigger_rule=TR.ALL_DONE, command=py("pass")),
        Task("join", upstream=both, trigger_rule=TR.NONE_FAILED_MIN_ONE_SUCCESS, command=py("pass")),
        Task("skipper", upstream=frozenset({"ok"}), trigger_rule=TR.ONE_FAILED, command=py("pass")),
        Task("after_skip", upstream=frozenset({"skipper", "ok"}), trigger_rule=TR.NONE_FAILED_MIN_ONE_SUCCESS,
             command=py("pass")),
    )
    rig.publish(dag)
    rig.service()
    run = rig.trigger(dag)
    done = rig.wait_run("rules", run.run_id)
    states = {t: ti.state for t, ti in rig.tis("rules", run.run_id).items()}
    assert states == {"ok": S.SUCCESS, "bad": S.FAILED, "on_failure": S.SUCCESS, "cleanup": S.SUCCESS,
                      "join": S.UPSTREAM_FAILED, "skipper": S.SKIPPED, "after_skip": S.SUCCESS}
    # A leaf (join) is upstream_failed, so the run failed, as in Airflow.
    assert done.state is DagRunState.FAILED


def test_scheduler_killed_mid_run_and_restarted_runs_no_try_twice(rig: Rig) -> None:
    dag = dag_of(
        "restart",
        Task("slow", command=py(marker("slow") + ";import time;time.sleep(1.5)")),
        Task("next", upstream=frozenset({"slow"}), command=py(marker("next"))),
        Task("last", upstream=frozenset({"next"}), command=py(marker("last"))),
    )
    rig.publish(dag)
    first = rig.service(identity="first")
    run = rig.trigger(dag)
    rig.wait_for("slow to run", lambda: rig.tis("restart", run.run_id)["slow"].state is S.RUNNING)
    first.stop(graceful=False)  # as if killed: no release; the lock frees when the session expires
    assert rig.run_state("restart", run.run_id) is DagRunState.RUNNING
    second = rig.service(rig.executor(), identity="second")
    done = rig.wait_run("restart", run.run_id, timeout=30)
    assert done.state is DagRunState.SUCCESS
    assert rig.executions() == {"last.1": 1, "next.1": 1, "slow.1": 1}
    info = read_leader(rig.store, leader_key())
    assert info is not None and info.id == "second"
    assert second.metrics.sample("leoflow_scheduler_wakeups_total", {"reason": "elected"}) >= 1


def test_recover_resubmits_queued_try_once_without_burning_try_number(rig: Rig) -> None:
    dag = dag_of("recover", Task("t", command=py(marker("t"))))
    rig.publish(dag)
    run = rig.trigger(dag)
    elector = LeaderElector(rig.store, leader_key(), ttl=1.0, lock_delay=0).start()
    assert elector.wait_elected(10)
    try:
        ex = rig.executor()
        sched = Scheduler(rig.repos, ex, fence=elector.fence, options=Options(executor_name="local"))
        stats = sched.wake_up(["test"])  # starts the run, plans it, queues and submits t
        assert stats.started_runs == 1 and stats.submitted == 1
        assert rig.tis("recover", run.run_id)["t"].state is S.QUEUED
        # A new leader (fresh scheduler, fresh executor instance) finds t queued and resubmits it.
        ex2 = rig.executor()
        again = Scheduler(rig.repos, ex2, fence=elector.fence, options=Options(executor_name="local"))
        assert again.recover() == 1 and ex2.submits == 1
        rig.wait_for("t to finish", lambda: _drain(again, ex2, rig, run.run_id), timeout=20)
        ti = rig.tis("recover", run.run_id)["t"]
        assert ti.try_number == 1 and ti.state is S.SUCCESS
        assert rig.executions() == {"t.1": 1}
    finally:
        elector.stop()


def _drain(sched: Scheduler, ex: LocalProcessExecutor, rig: Rig, run_id: str) -> bool:
    sched.add_events(ex.events(0.05))
    sched.wake_up(["executor"])
    v = rig.repos.runs.get("recover", run_id)
    return v is not None and v.record.state.finished


class FlakyExecutor(LocalProcessExecutor):
    """The real local executor whose infrastructure fails the first submit and every cancel."""

    failures = 1

    def submit(self, request: TryRequest) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("executor backend unavailable")
        super().submit(request)

    def cancel(self, key: TryKey, reason: str) -> None:
        super().cancel(key, reason)
        raise OSError("cancel acknowledgement lost")


def test_dispatch_failure_is_retried_without_spending_a_try(rig: Rig) -> None:
    dag = dag_of("dispatch", Task("t", command=py(marker("t"))))
    rig.publish(dag)
    svc = rig.service(rig.executor(FlakyExecutor))
    run = rig.trigger(dag)
    done = rig.wait_run("dispatch", run.run_id)
    assert done.state is DagRunState.SUCCESS
    assert rig.tis("dispatch", run.run_id)["t"].try_number == 1
    assert rig.executions() == {"t.1": 1}
    assert svc.metrics.sample("leoflow_scheduler_dispatch_failures_total") == 1


def test_marking_a_running_task_failed_kills_it(rig: Rig) -> None:
    pidfile = rig.tmp / "victim.pid"
    sleeper = py(f"import os,time;open({str(pidfile)!r},'w').write(str(os.getpid()));time.sleep(60)")
    dag = dag_of("mark", Task("victim", command=sleeper))
    rig.publish(dag)
    svc = rig.service(rig.executor(FlakyExecutor))
    svc.executor.failures = 0  # type: ignore[attr-defined]
    run = rig.trigger(dag)
    rig.wait_for("victim running",
                 lambda: pidfile.exists() and rig.tis("mark", run.run_id)["victim"].state is S.RUNNING)
    run_v = rig.repos.runs.require("mark", run.run_id)
    tis = [v.record for v in rig.repos.task_instances.list_for_run("mark", run.run_id)]
    result = actions.set_task_instance_state(dag, run_v.record, [run_v.record], tis, task_ids=["victim"],
                                             state=S.FAILED, now=datetime.now(UTC))
    old = rig.repos.task_instances.require(TIKey("mark", run.run_id, "victim"))
    rig.repos.task_instances.transition(old, result.task_instances[0])
    nudge(rig.store)
    pid = int(pidfile.read_text())
    rig.wait_for("the marked task's process to be killed", lambda: not _alive(pid), timeout=10)
    done = rig.wait_run("mark", run.run_id)
    assert done.state is DagRunState.FAILED
    assert rig.tis("mark", run.run_id)["victim"].executor_ref is None
    # The executor's cancel raised: counted as a store error, and the try is still gone.
    assert svc.metrics.sample("leoflow_scheduler_store_errors_total", {"op": "cancel"}) >= 1


def test_poison_run_does_not_block_others_and_xcom_limit(rig: Rig) -> None:
    good = dag_of("good", Task("big", command=py(
        "import json,os;json.dump('x'*300000, open(os.environ['LEOFLOW_XCOM_RETURN'],'w'))")))
    rig.publish(good)
    poison = rig.trigger(good, run_id="poison")
    # Pin the poison run to a DAG version that does not exist.
    v = rig.repos.runs.require("good", "poison")
    rig.repos.runs.update(v, dataclasses.replace(v.record, dag_version_number=99))
    svc = rig.service()
    run = rig.trigger(good)
    done = rig.wait_run("good", run.run_id)
    assert done.state is DagRunState.FAILED
    ti = rig.tis("good", run.run_id)["big"]
    assert ti.state is S.FAILED and "over the limit" in (ti.reason or "")
    assert rig.run_state("good", poison.run_id) is DagRunState.RUNNING
    assert svc.metrics.sample("leoflow_scheduler_run_errors_total") >= 1


def test_scheduled_runs_catch_up_within_max_active_runs(rig: Rig) -> None:
    start = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    dag = dag_of("daily", Task("t", command=py("pass")), schedule="@daily", start_date=start, catchup=True,
                 max_active_runs=1)
    rig.publish(dag)
    rig.service()
    expected = [start + timedelta(days=i) for i in range(3)]
    ids = [f"scheduled__{d.isoformat()}" for d in expected]
    for run_id in ids:
        rig.wait_for(f"run {run_id}", lambda r=run_id: rig.repos.runs.get("daily", r) is not None, timeout=20)
        assert rig.wait_run("daily", run_id).state is DagRunState.SUCCESS
    runs = {v.record.run_id: v.record for v in rig.repos.runs.for_dag("daily")}
    assert sorted(runs) == sorted(ids)
    assert all(r.logical_date == r.data_interval_start == r.data_interval_end == r.run_after for r in runs.values())
    # max_active_runs=1: no two runs overlapped.
    spans = sorted((r.start_date, r.end_date) for r in runs.values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    entry = rig.repos.dags.get("daily")
    assert entry is not None and entry.state.next_dagrun_logical_date == start + timedelta(days=3)


def test_standby_waits_and_takes_over_on_graceful_stop(rig: Rig) -> None:
    dag = dag_of("ha", Task("t", command=py(marker("t"))))
    rig.publish(dag)
    leader = rig.service(identity="one")
    rig.wait_for("a leader", lambda: leader.elector.is_leader)
    standby_ex = rig.executor()
    standby = rig.service(standby_ex, identity="two")
    time.sleep(0.3)
    assert not standby.elector.is_leader and standby.metrics.sample("leoflow_scheduler_is_leader") == 0
    leader.stop(graceful=True)
    rig.wait_for("the standby to lead", lambda: standby.elector.is_leader, timeout=10)
    run = rig.trigger(dag)
    assert rig.wait_run("ha", run.run_id).state is DagRunState.SUCCESS
    assert standby_ex.submits == 1 and json.loads(json.dumps(rig.executions())) == {"t.1": 1}


def test_metrics_registry_is_per_instance() -> None:
    a, b = SchedulerMetrics(), SchedulerMetrics()
    a.wakeups.labels(reason="x").inc()
    assert a.sample("leoflow_scheduler_wakeups_total", {"reason": "x"}) == 1
    with pytest.raises(KeyError, match="never emitted"):
        b.sample("leoflow_scheduler_wakeups_total", {"reason": "x"})


def test_run_stays_on_the_dag_version_it_started_with(rig: Rig) -> None:
    out = rig.tmp / "version.out"
    gate = rig.tmp / "gate"

    def version(label: str) -> DAG:
        return dag_of(
            "pinned",
            Task("wait", command=py(f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)")),
            Task("write", upstream=frozenset({"wait"}), command=py(f"open({str(out)!r},'w').write({label!r})")),
        )

    rig.publish(version("v1"))
    rig.service()
    run = rig.trigger(version("v1"))
    rig.wait_for("wait to run", lambda: rig.tis("pinned", run.run_id)["wait"].state is S.RUNNING)
    rig.publish(version("v2"))
    entry = rig.repos.dags.get("pinned")
    assert entry is not None and entry.latest is not None and entry.latest.version_number == 2
    gate.touch()
    assert rig.wait_run("pinned", run.run_id).state is DagRunState.SUCCESS
    assert out.read_text() == "v1"
    assert {t.dag_version_number for t in rig.tis("pinned", run.run_id).values()} == {1}


def test_dagrun_timeout_kills_running_tries_and_fails_the_run(rig: Rig) -> None:
    pidfile = rig.tmp / "long.pid"
    dag = dag_of("drt", Task("long", command=py(f"import os,time;open({str(pidfile)!r},'w').write(str(os.getpid()));"
                                                "time.sleep(60)")),
                 Task("after", upstream=frozenset({"long"}), command=py("pass")),
                 dagrun_timeout=timedelta(seconds=3))
    rig.publish(dag)
    rig.service()
    run = rig.trigger(dag)
    done = rig.wait_run("drt", run.run_id, timeout=20)
    assert done.state is DagRunState.FAILED
    assert {t: ti.state for t, ti in rig.tis("drt", run.run_id).items()} == {"long": S.SKIPPED, "after": S.SKIPPED}
    pid = int(pidfile.read_text())
    rig.wait_for("the long task's process to be killed", lambda: not _alive(pid), timeout=10)


def test_a_run_whose_decisions_exceed_one_transaction(rig: Rig) -> None:
    # 80 downstream tasks settle upstream_failed in one plan: 80 writes, split into atomic chunks.
    fan = [Task(f"d{i:02d}", upstream=frozenset({"root"}), command=py("pass")) for i in range(80)]
    dag = dag_of("wide", Task("root", command=py("import sys;sys.exit(1)")), *fan)
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag)
    done = rig.wait_run("wide", run.run_id)
    assert done.state is DagRunState.FAILED
    states = {t.state for tid, t in rig.tis("wide", run.run_id).items() if tid != "root"}
    assert states == {S.UPSTREAM_FAILED}
    assert svc.metrics.sample("leoflow_scheduler_decisions_total", {"kind": "upstream_failed"}) == 80


def test_pool_slots_and_priority_weight_order(rig: Rig) -> None:
    order = rig.tmp / "order.txt"
    rig.repos.pools.upsert(Pool("tiny", 1))

    def step(name: str, weight: int) -> Task:
        code = f"import time;open({str(order)!r},'a').write({name!r}+'\\n');time.sleep(0.3)"
        return Task(name, pool="tiny", priority_weight=weight, command=py(code))

    dag = dag_of("pooled", step("low", 1), step("high", 10), step("mid", 5))
    rig.publish(dag)
    svc = rig.service()
    run = rig.trigger(dag)
    m = svc.metrics
    rig.wait_for("two tasks waiting for the pool's one slot",
                 lambda: m.sample("leoflow_scheduler_pool_queue_depth", {"pool": "tiny"}) == 2)
    assert rig.wait_run("pooled", run.run_id).state is DagRunState.SUCCESS
    assert order.read_text().split() == ["high", "mid", "low"]
    spans = sorted((t.start_date, t.end_date) for t in rig.tis("pooled", run.run_id).values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # never two at once in a 1-slot pool


def test_a_dag_deleted_during_a_wake_up_does_not_break_publishing_its_next_run(rig: Rig) -> None:
    """The API may delete a DAG between the wake-up's read and its write of ``next_dagrun_*``."""
    dag = dag_of("deleted_meanwhile", Task("t", command=py("pass")), schedule="@daily",
                 start_date=datetime(2026, 1, 1, tzinfo=UTC))
    rig.publish(dag)
    entry = rig.repos.dags.get(dag.dag_id)
    assert entry is not None
    assert rig.repos.dags.delete(dag.dag_id)
    sched = Scheduler(rig.repos, rig.executor(), fence=lambda: None, options=Options(executor_name="local"))
    day = datetime(2026, 1, 2, tzinfo=UTC)
    nxt = DagRunInfo(run_after=day + timedelta(days=1), data_interval=DataInterval(day, day + timedelta(days=1)))
    sched._publish_next(dag.dag_id, entry.state, nxt, None)  # must neither raise nor re-create the DAG
    assert rig.repos.dags.get(dag.dag_id) is None
