"""A real rig for scheduler loop tests: SQLite store on disk, real repositories, real subprocesses."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leoflow.domain.dag import DAG, Task
from leoflow.domain.planning import new_task_instances
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.timetable import generate_run_id
from leoflow.scheduler.loop import Options
from leoflow.scheduler.service import SchedulerService
from leoflow.store.repos import Repositories
from leoflow.store.repos.base import TIKey
from leoflow.store.sqlite import SqliteStore

from .local_executor import LocalProcessExecutor

PY = sys.executable


def py(code: str) -> tuple[str, ...]:
    """A command running ``code`` in Python (argv, no shell)."""
    return (PY, "-c", code)


def marker(task_id: str) -> str:
    """Python that appends one line per execution to <MARKS>/<task>.<try>: counts executions."""
    return ("import os,pathlib;p=pathlib.Path(os.environ['MARKS'])/"
            f"('{task_id}.'+os.environ['AIRFLOW_CTX_TRY_NUMBER']);"
            "f=open(p,'a');f.write('x\\n');f.close()")


@dataclass
class Rig:
    tmp: Path
    store: SqliteStore
    repos: Repositories
    spool: Path
    marks: Path
    services: list[SchedulerService] = field(default_factory=list)
    executors: list[LocalProcessExecutor] = field(default_factory=list)

    def executor(self, cls: type[LocalProcessExecutor] = LocalProcessExecutor) -> LocalProcessExecutor:
        ex = cls(self.spool)
        self.executors.append(ex)
        return ex

    def publish(self, dag: DAG, *, paused: bool = False) -> None:
        self.repos.dags.record_version(dag, "# source\n", bundle_name="test", bundle_version="c0ffee",
                                       now=datetime.now(UTC))
        self.repos.dags.set_paused(dag.dag_id, paused)

    def trigger(self, dag: DAG, conf: dict[str, Any] | None = None, run_id: str | None = None) -> DagRun:
        now = datetime.now(UTC)
        entry = self.repos.dags.get(dag.dag_id)
        assert entry is not None and entry.latest is not None
        run = DagRun(dag_id=dag.dag_id, run_id=run_id or generate_run_id(DagRunType.MANUAL, now),
                     run_type=DagRunType.MANUAL, state=DagRunState.QUEUED, run_after=now,
                     dag_version_number=entry.latest.version_number, logical_date=now, data_interval_start=now,
                     data_interval_end=now, queued_at=now, conf=conf or {})
        self.repos.runs.create(run, new_task_instances(dag, run))
        return run

    def service(self, executor: LocalProcessExecutor | None = None, **kw: Any) -> SchedulerService:
        kw.setdefault("leader_ttl", 1.0)
        kw.setdefault("lock_delay", 0.0)
        kw.setdefault("watch_wait", 0.5)
        kw.setdefault("options", Options(executor_name="local"))
        svc = SchedulerService(self.repos, executor or self.executor(), **kw)
        self.services.append(svc)
        return svc.start()

    def run_state(self, dag_id: str, run_id: str) -> DagRunState:
        v = self.repos.runs.get(dag_id, run_id)
        assert v is not None
        return v.record.state

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 30.0) -> DagRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.repos.runs.get(dag_id, run_id)
            if v is not None and v.record.state.finished:
                return v.record
            time.sleep(0.02)
        states = {t.task_id: t.state for t in self.tis(dag_id, run_id).values()}
        raise AssertionError(f"run {run_id} did not finish in {timeout}s; task states: {states}")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``check``; a metric sample not emitted yet (KeyError) counts as "not yet"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except KeyError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def tis(self, dag_id: str, run_id: str) -> dict[str, TaskInstance]:
        return {v.record.task_id: v.record for v in self.repos.task_instances.list_for_run(dag_id, run_id)}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[TaskInstance]:
        return self.repos.task_instances.tries(TIKey(dag_id, run_id, task_id))

    def executions(self) -> dict[str, int]:
        return {p.name: len(p.read_text().splitlines()) for p in sorted(self.marks.iterdir())}


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARKS", str(marks))
    store = SqliteStore(tmp_path / "leoflow.db", session_ttl_min=0.2)
    repos = Repositories.open(store)
    r = Rig(tmp_path, store, repos, tmp_path / "spool", marks)
    yield r
    for svc in r.services:
        if not svc.stopped:
            svc.stop(graceful=True, timeout=5)
    for svc in r.services:
        svc.join()
    for ex in r.executors:
        ex.close()
    repos.close()
    store.close()


def dag_of(dag_id: str, *tasks: Task, **kw: Any) -> DAG:
    kw.setdefault("is_paused_upon_creation", False)
    return DAG(dag_id, {t.task_id: t for t in tasks}, **kw)
