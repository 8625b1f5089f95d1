"""Cost of one scheduler wake-up with N active runs in steady state (the lessons' PR #624 harness).

    .venv/bin/python -m tests.benchmarks.bench_scheduler                  # N = 10, 100, 500
    .venv/bin/python -m tests.benchmarks.bench_scheduler --runs 1000 --wakeups 30

Per N, on a fresh SQLite store (the embedded store of ``leoflow standalone``):
1. one DAG of 10 chained tasks is published; N manual runs are created and started;
2. every run is brought to steady state: task 1 succeeded, task 2 running (its try reported
   started), the rest waiting — so each wake-up plans N runs;
3. **idle wake-ups**: nothing happened; the loop reads and re-plans every run and writes nothing
   (the cost of being woken for nothing);
4. **busy wake-ups**: the running try of every run reports success, so one wake-up writes N
   successes, schedules and queues N next tasks and submits N tries to the real ``agents``
   executor (queue entries in the same store); repeated down the chain.

Prints p50/p99 wake-up time for both, decisions per second for the busy ones, and peak RSS.
Nothing is asserted (figures only, per the project rules).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leoflow.domain.dag import DAG, Task
from leoflow.domain.planning import new_task_instances
from leoflow.domain.records import DagRun, Pool
from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState
from leoflow.executors.agents import AgentsExecutor
from leoflow.executors.port import TryEvent, TryKey, TryOutcome
from leoflow.scheduler.loop import Options, Scheduler
from leoflow.scheduler.signals import leader_key
from leoflow.store.election import LeaderElector
from leoflow.store.repos import Repositories
from leoflow.store.sqlite import SqliteStore

CHAIN = 10


def _dag() -> DAG:
    tasks = {}
    for i in range(CHAIN):
        tid = f"t{i:02d}"
        ups = frozenset({f"t{i - 1:02d}"}) if i else frozenset()
        tasks[tid] = Task(tid, command=("true",), upstream=ups)
    return DAG("bench", tasks, max_active_runs=100_000, is_paused_upon_creation=False)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _events(sched: Scheduler, repos: Repositories, outcome: TryOutcome, state: TaskInstanceState) -> int:
    """Report ``outcome`` for every try whose task instance is in ``state``."""
    at = datetime.now(UTC)
    events = []
    for run in repos.runs.active():
        for v in repos.task_instances.list_for_run(run.record.dag_id, run.record.run_id):
            ti = v.record
            if ti.state is state:
                key = TryKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)
                events.append(TryEvent(key, outcome, at, exit_code=0 if outcome is TryOutcome.SUCCESS else None,
                                       hostname="bench", executor_ref="bench-agent"))
    sched.add_events(events)
    return len(events)


def bench(n: int, wakeups: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "leoflow.db", session_ttl_min=1.0)
        repos = Repositories.open(store)
        elector = LeaderElector(store, leader_key(), ttl=30.0, lock_delay=0).start()
        assert elector.wait_elected(10)
        executor = AgentsExecutor(store)
        sched = Scheduler(repos, executor, fence=elector.fence,
                          options=Options(executor_name="agents", parallelism=100_000))
        try:
            dag = _dag()
            # Enough pool slots for every run's running task (default_pool has Airflow's 128).
            repos.pools.upsert(Pool("default_pool", 1_000_000))
            repos.dags.record_version(dag, "# bench\n", bundle_name="bench", bundle_version=None,
                                      now=datetime.now(UTC))
            base = datetime(2026, 1, 1, tzinfo=UTC)
            for i in range(n):
                at = base + timedelta(minutes=i)
                run = DagRun("bench", f"manual__{at.isoformat()}", DagRunType.MANUAL, DagRunState.QUEUED, at, 1,
                             logical_date=at, data_interval_start=at, data_interval_end=at, queued_at=at)
                repos.runs.create(run, new_task_instances(dag, run))
            # Start every run (queued -> running, t00 queued + submitted), then t00 started + succeeded,
            # t01 queued; t01 started: steady state.
            sched.wake_up(["bench"])
            for outcome, state in ((TryOutcome.STARTED, TaskInstanceState.QUEUED),
                                   (TryOutcome.SUCCESS, TaskInstanceState.RUNNING),
                                   (TryOutcome.STARTED, TaskInstanceState.QUEUED)):
                _events(sched, repos, outcome, state)
                sched.wake_up(["bench"])
            idle = []
            for _ in range(wakeups):
                t0 = time.perf_counter()
                stats = sched.wake_up(["bench"])
                idle.append(time.perf_counter() - t0)
                assert stats.decisions == 0, stats
            busy, decisions = [], []
            for _ in range(min(wakeups, CHAIN - 3)):
                _events(sched, repos, TryOutcome.SUCCESS, TaskInstanceState.RUNNING)
                t0 = time.perf_counter()
                stats = sched.wake_up(["bench"])
                busy.append(time.perf_counter() - t0)
                decisions.append(stats.decisions + stats.events)
                _events(sched, repos, TryOutcome.STARTED, TaskInstanceState.QUEUED)
                sched.wake_up(["bench"])
            return {
                "idle_p50": _pct(idle, 0.5), "idle_p99": _pct(idle, 0.99),
                "busy_p50": _pct(busy, 0.5), "busy_p99": _pct(busy, 0.99),
                "decisions_per_s": sum(decisions) / sum(busy),
                "decisions_per_wakeup": statistics.mean(decisions),
            }
        finally:
            elector.stop()
            executor.close()
            repos.close()
            store.close()


def main() -> None:
    logging.getLogger("leoflow").setLevel(logging.ERROR)  # the elector's "stepping down" at each teardown
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[10, 100, 500])
    parser.add_argument("--wakeups", type=int, default=20)
    args = parser.parse_args()
    print(f"{'active runs':>11} | {'idle p50':>9} {'idle p99':>9} | {'busy p50':>9} {'busy p99':>9} | "
          f"{'decisions/wake':>14} {'decisions/s':>11}")
    for n in args.runs:
        r = bench(n, args.wakeups)
        print(f"{n:>11} | {r['idle_p50'] * 1000:>7.1f}ms {r['idle_p99'] * 1000:>7.1f}ms | "
              f"{r['busy_p50'] * 1000:>7.1f}ms {r['busy_p99'] * 1000:>7.1f}ms | "
              f"{r['decisions_per_wakeup']:>14.0f} {r['decisions_per_s']:>11.0f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
