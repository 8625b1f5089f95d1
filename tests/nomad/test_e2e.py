"""End to end on the HashiCorp stack, faked over real HTTP: the real scheduler (leader election and
state in the fake Consul through the Consul adapter) driving the Nomad executor against the fake
Nomad, which runs every try as a real process."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leoflow.domain.dag import DAG, Resources, Task
from leoflow.domain.planning import new_task_instances
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.states import TaskInstanceState as S
from leoflow.domain.timetable import generate_run_id
from leoflow.executors.nomad import JobSettings, NomadClient, NomadExecutor, Settings, job_id_for
from leoflow.executors.port import TryKey
from leoflow.logs.store import LogStore
from leoflow.scheduler.loop import Options
from leoflow.scheduler.service import SchedulerService
from leoflow.store.consul import ConsulStore
from leoflow.store.repos import Repositories
from leoflow.store.repos.base import TIKey
from tests.fakes.consul import FakeConsul
from tests.fakes.nomad import FakeNomad, Running

PY = sys.executable


@dataclass
class Stack:
    nomad: FakeNomad
    store: ConsulStore
    repos: Repositories
    logs: LogStore
    marks: Path
    services: list[SchedulerService] = field(default_factory=list)
    executors: list[NomadExecutor] = field(default_factory=list)

    def executor(self) -> NomadExecutor:
        ex = NomadExecutor(NomadClient(Settings(addr=self.nomad.addr, blocking_wait=2.0)), self.logs, JobSettings(),
                           placement_timeout=30.0, log_drain_timeout=5.0, read_timeout=5.0)
        self.executors.append(ex)
        return ex

    def service(self, identity: str) -> tuple[SchedulerService, NomadExecutor]:
        ex = self.executor()
        svc = SchedulerService(self.repos, ex, leader_ttl=1.0, lock_delay=0.0, watch_wait=0.5, identity=identity,
                               options=Options(executor_name="nomad"))
        self.services.append(svc)
        return svc.start(), ex

    def task(self, task_id: str, code: str, **kw: object) -> Task:
        """A raw_exec task running Python that first counts its execution in <marks>/<task>.<try>."""
        count = ("import os,pathlib;p=pathlib.Path(os.environ['MARKS'])/"
                 f"('{task_id}.'+os.environ['AIRFLOW_CTX_TRY_NUMBER']);f=open(p,'a');f.write('x\\n');f.close()\n")
        return Task(task_id, command=(PY, "-c", count + code), driver="raw_exec", env={"MARKS": str(self.marks)},
                    resources=Resources(cpu=100, memory=64), **kw)  # type: ignore[arg-type]

    def publish_and_trigger(self, dag: DAG) -> DagRun:
        now = datetime.now(UTC)
        self.repos.dags.record_version(dag, "# source\n", bundle_name="test", bundle_version="c0ffee", now=now)
        self.repos.dags.set_paused(dag.dag_id, False)
        entry = self.repos.dags.get(dag.dag_id)
        assert entry is not None and entry.latest is not None
        run = DagRun(dag_id=dag.dag_id, run_id=generate_run_id(DagRunType.MANUAL, now), run_type=DagRunType.MANUAL,
                     state=DagRunState.QUEUED, run_after=now, dag_version_number=entry.latest.version_number,
                     logical_date=now, data_interval_start=now, data_interval_end=now, queued_at=now)
        self.repos.runs.create(run, new_task_instances(dag, run))
        return run

    def tis(self, run: DagRun) -> dict[str, TaskInstance]:
        return {v.record.task_id: v.record for v in self.repos.task_instances.list_for_run(run.dag_id, run.run_id)}

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_run(self, run: DagRun, timeout: float = 40.0) -> DagRun:
        def done() -> bool:
            v = self.repos.runs.get(run.dag_id, run.run_id)
            return v is not None and v.record.state.finished

        try:
            self.wait("the run to finish", done, timeout)
        except AssertionError:
            states = [(t, ti.state, ti.reason) for t, ti in self.tis(run).items()]
            raise AssertionError(f"run did not finish: {states}") from None
        v = self.repos.runs.get(run.dag_id, run.run_id)
        assert v is not None
        return v.record

    def executions(self) -> dict[str, int]:
        return {p.name: len(p.read_text().splitlines()) for p in sorted(self.marks.iterdir())}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    marks = tmp_path / "marks"
    marks.mkdir()
    with FakeConsul(session_ttl_min=0.05) as consul, FakeNomad(heartbeat=0.3) as nomad:
        store = ConsulStore(consul.addr, timeout=5.0)
        repos = Repositories.open(store)
        s = Stack(nomad, store, repos, LogStore(tmp_path / "logs"), marks)
        yield s
        for svc in s.services:
            if not svc.stopped:
                svc.stop(graceful=True, timeout=5)
        for svc in s.services:
            svc.join()
        for ex in s.executors:
            ex.close()
        repos.close()
        store.close()


def test_a_dag_runs_to_success_through_nomad(stack: Stack) -> None:
    dag = DAG("nomad_chain", {
        "extract": stack.task("extract", "import json,os;print('extracting');"
                                         "open(os.environ['LEOFLOW_XCOM_RETURN'],'w').write(json.dumps({'rows': 42}))"),
        "load": stack.task("load", "print('loading')", upstream=frozenset({"extract"})),
    }, is_paused_upon_creation=False)
    stack.service("one")
    run = stack.publish_and_trigger(dag)
    done = stack.wait_run(run)
    assert done.state is DagRunState.SUCCESS
    tis = stack.tis(run)
    assert {t: ti.state for t, ti in tis.items()} == {"extract": S.SUCCESS, "load": S.SUCCESS}
    assert tis["extract"].hostname == "fake-node-1"
    xcom = stack.repos.xcom.get(TIKey(run.dag_id, run.run_id, "extract"))
    assert xcom is not None and xcom.value == {"rows": 42}
    assert stack.executions() == {"extract.1": 1, "load.1": 1}
    key = TryKey(run.dag_id, run.run_id, "extract", -1, 1)
    assert "extracting" in [line["event"] for line in stack.logs.read(key).lines]
    stack.wait("every job purged", lambda: not stack.nomad.jobs)


def test_a_failing_task_is_retried_as_a_new_nomad_job(stack: Stack) -> None:
    dag = DAG("nomad_retry", {
        "flaky": stack.task("flaky", "import os,sys;sys.exit(1 if os.environ['AIRFLOW_CTX_TRY_NUMBER']=='1' else 0)",
                            retries=1, retry_delay=timedelta(seconds=0)),
    }, is_paused_upon_creation=False)
    stack.service("one")
    run = stack.publish_and_trigger(dag)
    assert stack.wait_run(run).state is DagRunState.SUCCESS
    ti = stack.tis(run)["flaky"]
    assert ti.try_number == 2 and ti.state is S.SUCCESS
    assert stack.executions() == {"flaky.1": 1, "flaky.2": 1}
    assert stack.nomad.registrations == 2


def test_a_lost_allocation_is_retried_without_spending_a_retry(stack: Stack) -> None:
    dag = DAG("nomad_lost", {"t": stack.task("t", "print('ran')")}, is_paused_upon_creation=False)  # retries=0
    stack.service("one")
    run = stack.publish_and_trigger(dag)
    first = job_id_for(TryKey(run.dag_id, run.run_id, "t", -1, 1))
    stack.nomad.script(first, Running(30, stdout=b"working\n"))
    stack.wait("try 1 running", lambda: stack.tis(run)["t"].state is S.RUNNING)
    stack.nomad.lose(first)
    assert stack.wait_run(run).state is DagRunState.SUCCESS
    ti = stack.tis(run)["t"]
    assert ti.try_number == 2 and ti.state is S.SUCCESS
    tries = stack.repos.task_instances.tries(TIKey(run.dag_id, run.run_id, "t"))
    assert any("lost" in (t.reason or "") for t in tries if t.try_number == 1)
    assert stack.executions() == {"t.2": 1}


def test_leader_killed_mid_run_standby_takes_over_nothing_submitted_twice(stack: Stack) -> None:
    dag = DAG("nomad_failover", {
        "slow": stack.task("slow", "import time;time.sleep(2)"),
        "next": stack.task("next", "print('next')", upstream=frozenset({"slow"})),
        "last": stack.task("last", "print('last')", upstream=frozenset({"next"})),
    }, is_paused_upon_creation=False)
    leader, leader_ex = stack.service("leader")
    stack.wait("leader elected", lambda: leader.elector.is_leader, timeout=10)
    standby, _ = stack.service("standby")
    run = stack.publish_and_trigger(dag)
    stack.wait("slow to run", lambda: stack.tis(run)["slow"].state is S.RUNNING)
    leader.stop(graceful=False)  # killed: no release; the lock frees when its session expires
    leader_ex.close()
    assert stack.wait_run(run, timeout=60).state is DagRunState.SUCCESS
    assert standby.elector.is_leader
    assert stack.executions() == {"last.1": 1, "next.1": 1, "slow.1": 1}
    assert stack.nomad.registrations == 3, "each try registered exactly once across both leaders"


def test_new_leader_stops_a_nomad_job_that_no_live_try_owns(stack: Stack) -> None:
    """Recovery on election reconciles: a Leoflow job left behind with no live try is stopped."""
    from leoflow.executors.port import TryRequest

    orphan_key = TryKey("gone_dag", "manual__2026-01-01T00:00:00+00:00", "t", -1, 1)
    previous = stack.executor()
    previous.submit(TryRequest(orphan_key, command=(PY, "-c", "import time;time.sleep(60)"), driver="raw_exec",
                               resources=Resources(cpu=100, memory=64)))
    orphan = job_id_for(orphan_key)
    stack.wait("orphan registered", lambda: stack.nomad.job(orphan) is not None)
    previous.close()
    leader, _ = stack.service("leader")
    stack.wait("leader elected", lambda: leader.elector.is_leader, timeout=10)
    stack.wait("orphan stopped", lambda: (stack.nomad.job(orphan) or {"Stop": True})["Stop"], timeout=20)


def test_a_task_declaring_secrets_without_vault_fails_visibly_and_is_never_registered(stack: Stack) -> None:
    """Through the real scheduler: the refusal is a task failure (it spends the user's retries, with
    retry_delay, like the agents path's undeliverable secret) recorded with its reason on each try
    and in each try's log; Nomad never sees a job (adr/0099)."""
    dag = DAG("nomad_secretless", {
        "needs_db": stack.task("needs_db", "print('must not run')", connections=("warehouse",), retries=1,
                               retry_delay=timedelta(seconds=0)),
    }, is_paused_upon_creation=False)
    stack.service("one")
    run = stack.publish_and_trigger(dag)
    assert stack.wait_run(run).state is DagRunState.FAILED
    ti = stack.tis(run)["needs_db"]
    assert ti.state is S.FAILED and ti.try_number == 2
    tries = stack.repos.task_instances.tries(TIKey(run.dag_id, run.run_id, "needs_db"))
    assert [t.try_number for t in tries] == [1, 2]
    for t in tries:
        assert t.state is S.FAILED
        assert "connection 'warehouse'" in (t.reason or "") and "Vault is not configured for the scheduler" in (
            t.reason or ""), t.reason
        key = TryKey(run.dag_id, run.run_id, "needs_db", -1, t.try_number)
        lines = [line["event"] for line in stack.logs.read(key).lines]
        assert any(ln.startswith("cannot run on Nomad: the task declares connection 'warehouse'") for ln in lines)
    assert stack.nomad.registrations == 0 and stack.nomad.submitted == []
    assert stack.executions() == {}
