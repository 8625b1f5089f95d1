"""Benchmarks of the repository layer (issue 3). Prints figures; asserts nothing about time.

    .venv/bin/python -m tests.benchmarks.bench_repos            # everything, SQLite + fake Consul
    .venv/bin/python -m tests.benchmarks.bench_repos --quick    # smaller scale

Sections:
1. store operations per task try (queued -> running -> success), scheduler batching vs. one by one;
2. bytes and keys per finished run of 10 tasks, live and compacted;
3. mixed workload: throughput and p50/p99 per repository call, on SQLite and the fake Consul,
   plus scheduler-style batched transitions/s;
4. key count and bytes after 1,000 runs of a 10-task DAG, before and after compaction;
5. the UI's read paths with 1,000 DAGs and 100,000 task instances (projection vs. prefix scans).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leoflow.domain.records import AuditEvent, DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.consul import ConsulStore
from leoflow.store.port import Cas, Delete, DeleteCas, Entry, Op, Set, Store, TxnResult, WatchResult
from leoflow.store.repos import Repositories, RunQuery, TIKey, codec
from leoflow.store.repos.task_instances import pack_value
from leoflow.store.sqlite import SqliteStore
from tests.fakes.consul import FakeConsul

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_WRITES = (Set, Cas, Delete, DeleteCas)


class CountingStore:
    """Delegates to a real store and counts requests (reads, write requests, written keys)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.c: Counter[str] = Counter()

    def reset(self) -> Counter[str]:
        old, self.c = self.c, Counter()
        return old

    def get(self, key: str) -> Entry | None:
        self.c["reads"] += 1
        return self.inner.get(key)

    def list(self, prefix: str) -> list[Entry]:
        self.c["reads"] += 1
        return self.inner.list(prefix)

    def keys(self, prefix: str, separator: str | None = "/") -> list[str]:
        self.c["reads"] += 1
        return self.inner.keys(prefix, separator)

    def put(self, key: str, value: bytes, **kw: Any) -> bool:
        self.c["write_requests"] += 1
        self.c["key_writes"] += 1
        return self.inner.put(key, value, **kw)

    def delete(self, key: str, **kw: Any) -> bool:
        self.c["write_requests"] += 1
        self.c["key_writes"] += 1
        return self.inner.delete(key, **kw)

    def txn(self, ops: Sequence[Op]) -> TxnResult:
        self.c["write_requests" if any(isinstance(o, _WRITES) for o in ops) else "reads"] += 1
        self.c["key_writes"] += sum(isinstance(o, _WRITES) for o in ops)
        return self.inner.txn(ops)

    def watch(self, key: str, *, index: int, wait: float, recurse: bool = False) -> WatchResult:
        return self.inner.watch(key, index=index, wait=wait, recurse=recurse)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def backends(which: Sequence[str]) -> Iterator[list[tuple[str, Callable[[], Store]]]]:
    with tempfile.TemporaryDirectory() as tmp, FakeConsul(jitter=False) as fake:
        counter = [0]

        def sqlite() -> Store:
            counter[0] += 1
            return SqliteStore(Path(tmp) / f"bench-{counter[0]}.db")

        def consul() -> Store:
            # A fresh root per use keeps runs apart on the one fake.
            return ConsulStore(fake.addr, timeout=30.0)

        table = {"sqlite": sqlite, "consul-fake": consul}
        yield [("sqlite", sqlite)] + [(name, table[name]) for name in which]


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:6.2f} ms  p99 {pct(values, 99) * 1000:6.2f} ms  (n={len(values)})"


def dag_run(dag_id: str, n: int, state: DagRunState = DagRunState.QUEUED) -> DagRun:
    when = T0 + timedelta(hours=n)
    return DagRun(dag_id=dag_id, run_id=f"scheduled__{when.isoformat()}", run_type=DagRunType.SCHEDULED,
                  state=state, run_after=when, logical_date=when, data_interval_start=when - timedelta(hours=1),
                  data_interval_end=when, dag_version_number=1, queued_at=when, conf={})


def task_instances(run: DagRun, n: int = 10) -> list[TaskInstance]:
    return [TaskInstance(run.dag_id, run.run_id, f"task_{i:02d}", max_tries=1, pool="default_pool",
                         operator="BashOperator", priority_weight=n - i, dag_version_number=1) for i in range(n)]


def lifecycle(repos: Repositories, run: DagRun, tis: list[TaskInstance], *, batched: bool) -> None:
    """One run of ``len(tis)`` tasks from creation to success, as scheduler + agent reports write it."""
    v_run = repos.runs.create(run, tis)
    now = run.run_after
    current = repos.task_instances.list_for_run(run.dag_id, run.run_id)
    if batched:  # the scheduler queues every ready TI of one wake-up in one batch
        b = repos.batch()
        hs = [b.transition(v, replace(v.record, state=S.QUEUED, try_number=1, queued_dttm=now)) for v in current]
        b.commit()
        current = [h.result for h in hs]
    else:
        current = [repos.task_instances.transition(v, replace(v.record, state=S.QUEUED, try_number=1,
                                                                queued_dttm=now)) for v in current]
    b = repos.batch()
    b.update_run(v_run, replace(run, state=DagRunState.RUNNING, start_date=now))
    b.commit()
    v_run = b.handles[0].result
    for v in current:  # agent reports arrive one by one, fenced by try number
        key = TIKey(run.dag_id, run.run_id, v.record.task_id)
        repos.task_instances.report(key, 1, lambda ti: replace(ti, state=S.RUNNING, start_date=now, hostname="h"))
        repos.task_instances.report(key, 1, lambda ti: replace(ti, state=S.SUCCESS, end_date=now, exit_code=0))
    repos.runs.update(v_run, replace(v_run.record, state=DagRunState.SUCCESS, end_date=now))


def footprint(store: Store, prefix: str) -> tuple[int, int]:
    entries = store.list(prefix)
    return len(entries), sum(len(e.key) + len(e.value) for e in entries)


# ---- 1 + 2 -------------------------------------------------------------------------------------
def section_ops_and_bytes(make: Callable[[], Store]) -> None:
    print("\n== 1. store operations per task try (queued -> running -> success), 10-task run, SQLite")
    for batched in (True, False):
        cs = CountingStore(make())
        repos = Repositories.open(cs, root="bench")  # type: ignore[arg-type]
        run = dag_run("ops", 0)
        tis = task_instances(run)
        repos.runs.create(run, tis)  # creation is counted per run, not per try
        cs.reset()
        cur = repos.task_instances.list_for_run(run.dag_id, run.run_id)
        if batched:
            b = repos.batch()
            for v in cur:
                b.transition(v, replace(v.record, state=S.QUEUED, try_number=1))
            b.commit()
        else:
            for v in cur:
                repos.task_instances.transition(v, replace(v.record, state=S.QUEUED, try_number=1))
        queued = cs.reset()
        for v in cur:
            key = TIKey(run.dag_id, run.run_id, v.record.task_id)
            repos.task_instances.report(key, 1, lambda ti: replace(ti, state=S.RUNNING))
            repos.task_instances.report(key, 1, lambda ti: replace(ti, state=S.SUCCESS))
        reports = cs.reset()
        n = len(cur)
        label = "scheduler batches the queueing" if batched else "every transition on its own"
        print(f"  {label}: per try {(queued['write_requests'] + reports['write_requests']) / n:.2f} write requests "
              f"(queue {queued['write_requests'] / n:.2f} + reports {reports['write_requests'] / n:.2f}), "
              f"{(queued['key_writes'] + reports['key_writes']) / n:.2f} key writes, "
              f"{(queued['reads'] + reports['reads']) / n:.2f} reads")
        cs.inner.close()

    print("\n== 2. bytes and keys per finished run of 10 tasks")
    store = make()
    repos = Repositories.open(store, root="bench")
    lifecycle(repos, dag_run("size", 0), task_instances(dag_run("size", 0)), batched=True)
    keys_live, bytes_live = footprint(store, "bench/")
    repos.runs.compact("size", dag_run("size", 0).run_id)
    keys_packed, bytes_packed = footprint(store, "bench/")
    print(f"  live (not compacted): {keys_live} keys, {bytes_live} bytes (keys + values)")
    print(f"  compacted:            {keys_packed} keys, {bytes_packed} bytes")
    store.close()


# ---- 3 -----------------------------------------------------------------------------------------
def section_mixed(name: str, make: Callable[[], Store], runs: int) -> None:
    store = make()
    repos = Repositories.open(store, root=f"mixed-{name}")
    lat: dict[str, list[float]] = {}

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        lat.setdefault(label, []).append(time.perf_counter() - t)
        return out

    transitions = 0
    started = time.perf_counter()
    for i in range(runs):
        run = dag_run("mixed", i)
        tis = task_instances(run)
        v_run = timed("runs.create (+10 TIs)", lambda run=run, tis=tis: repos.runs.create(run, tis))
        cur = timed("task_instances.snapshot", lambda run=run: repos.task_instances.list_for_run("mixed", run.run_id))
        b = repos.batch()
        hs = [b.transition(v, replace(v.record, state=S.QUEUED, try_number=1)) for v in cur]
        timed("batch.commit (10 transitions)", b.commit)
        transitions += len(hs)
        v_run = timed("runs.update", lambda v_run=v_run: repos.runs.update(
            v_run, replace(v_run.record, state=DagRunState.RUNNING)))
        for h in hs:
            key = TIKey("mixed", run.run_id, h.result.record.task_id)
            timed("task_instances.report", lambda key=key: repos.task_instances.report(
                key, 1, lambda ti: replace(ti, state=S.RUNNING)))
            timed("task_instances.report", lambda key=key: repos.task_instances.report(
                key, 1, lambda ti: replace(ti, state=S.SUCCESS)))
            transitions += 2
        timed("runs.update", lambda v_run=v_run: repos.runs.update(
            v_run, replace(v_run.record, state=DagRunState.SUCCESS)))
        timed("runs.list (dag, newest 25)", lambda: repos.runs.list(RunQuery(dag_ids=["mixed"], order_by="-run_after",
                                                                             limit=25)))
        timed("audit.append", lambda: repos.audit.append(AuditEvent(0, T0, "bench")))
    elapsed = time.perf_counter() - started
    calls = sum(len(v) for v in lat.values())
    print(f"\n== 3. mixed workload on {name}: {runs} runs x 10 tasks, {calls} repository calls in {elapsed:.2f} s "
          f"= {calls / elapsed:.0f} calls/s, {transitions / elapsed:.0f} task transitions/s")
    for label, values in lat.items():
        print(f"  {label:32s} {ms(values)}")

    # Scheduler-style: one wake-up decides many transitions; the batch packs 63 per fenced txn.
    run = dag_run("wide", 0)
    tis = [TaskInstance("wide", run.run_id, f"t{i:04d}", max_tries=1) for i in range(630)]
    repos.runs.create(run, tis)
    cur = repos.task_instances.list_for_run("wide", run.run_id)
    t = time.perf_counter()
    for state, try_number in ((S.QUEUED, 1), (S.RUNNING, 1), (S.SUCCESS, 1)):
        b = repos.batch()
        hs = [b.transition(v, replace(v.record, state=state, try_number=try_number)) for v in cur]
        result = b.commit()
        cur = [h.result for h in hs]
    elapsed = time.perf_counter() - t
    print(f"  scheduler batches (630 TIs x 3 transitions, {result.txns} txns per wake-up): "
          f"{3 * len(cur) / elapsed:.0f} task transitions/s")
    store.close()


# ---- 4 -----------------------------------------------------------------------------------------
def section_growth(name: str, make: Callable[[], Store], runs: int) -> None:
    store = make()
    root = f"growth-{name}"
    repos = Repositories.open(store, root=root)
    t = time.perf_counter()
    for i in range(runs):
        run = dag_run("growth", i)
        lifecycle(repos, run, task_instances(run), batched=True)
    took = time.perf_counter() - t
    keys_before, bytes_before = footprint(store, root + "/")
    t = time.perf_counter()
    for v in repos.runs.for_dag("growth"):
        repos.runs.compact("growth", v.record.run_id)
    compact_s = time.perf_counter() - t
    keys_after, bytes_after = footprint(store, root + "/")
    print(f"\n== 4. {runs} runs of a 10-task DAG on {name} (driven in {took:.1f} s; compaction {compact_s:.1f} s)")
    print(f"  before compaction: {keys_before} keys, {bytes_before / 1024:.0f} KiB")
    print(f"  after compaction:  {keys_after} keys, {bytes_after / 1024:.0f} KiB "
          f"({keys_after / runs:.1f} keys and {bytes_after / runs:.0f} bytes per run)")
    store.close()


# ---- 5 -----------------------------------------------------------------------------------------
def seed_scale(store: Store, root: str, dags: int, runs_per_dag: int, tasks: int) -> None:
    """Finished, compacted runs (what retention leaves) plus one active run per 20 DAGs, written with
    the repositories' own encoders in 32-run txns so seeding stays fast."""
    repos = Repositories.open(store, root=root)
    ks = repos.keyspace
    ops: list[Op] = []
    for d in range(dags):
        dag_id = f"dag_{d:04d}"
        for r in range(runs_per_dag):
            state = DagRunState.FAILED if (d + r) % 7 == 0 else DagRunState.SUCCESS
            run = replace(dag_run(dag_id, r, state), start_date=T0, end_date=T0 + timedelta(hours=r, minutes=3))
            tis = [replace(t, state=S.SUCCESS if state == DagRunState.SUCCESS else S.FAILED, try_number=1,
                           start_date=T0, end_date=T0) for t in task_instances(run, tasks)]
            ops += [Set(ks.run(dag_id, run.run_id), codec.encode(run)),
                    Set(ks.packed(dag_id, run.run_id), pack_value(dag_id, run.run_id, tis, []))]
            if len(ops) >= 60:
                store.txn(ops)
                ops = []
        if d % 20 == 0:
            run = dag_run(dag_id, runs_per_dag, DagRunState.RUNNING)
            repos.runs.create(run, task_instances(run, tasks))
    if ops:
        store.txn(ops)
    for i in range(2000):
        repos.audit.append(AuditEvent(0, T0 + timedelta(minutes=i), "trigger_dag_run", owner="admin",
                                      dag_id=f"dag_{i % dags:04d}"))


def section_reads(name: str, make: Callable[[], Store], dags: int, runs_per_dag: int, tasks: int, reps: int) -> None:
    store = make()
    root = f"scale-{name}"
    t = time.perf_counter()
    seed_scale(store, root, dags, runs_per_dag, tasks)
    seeded = time.perf_counter() - t
    n_runs = dags * runs_per_dag + (dags + 19) // 20
    print(f"\n== 5. UI read paths on {name}: {dags} DAGs, {n_runs} runs, {n_runs * tasks} task instances "
          f"(seeded in {seeded:.1f} s)")
    gc.collect()
    rss0 = rss_mib()
    t = time.perf_counter()
    api = Repositories.open(store, root=root, projection=True)
    load = time.perf_counter() - t
    gc.collect()
    print(f"  projection: initial load {load * 1000:.0f} ms, RSS +{rss_mib() - rss0:.0f} MiB "
          f"for {len(api.projection or [])} runs (process RSS {rss_mib():.0f} MiB)")
    page = [f"dag_{d:04d}" for d in range(100)]
    some_run = dag_run("dag_0007", 3).run_id
    paths: list[tuple[str, Callable[[Repositories], Any], int]] = [
        ("DAG list: latest run of 100 DAGs", lambda r: r.runs.latest(page), 0),
        ("DAG list: dagStats of 100 DAGs", lambda r: r.runs.counts_by_state(page), 0),
        ("runs of a DAG, newest 25", lambda r: r.runs.list(RunQuery(dag_ids=["dag_0007"], order_by="-run_after",
                                                                     limit=25)), 0),
        ("runs of all DAGs (~), newest 50", lambda r: r.runs.list(RunQuery(order_by="-run_after", limit=50)), 0),
        ("runs of all DAGs (~), state=failed", lambda r: r.runs.list(RunQuery(states=["failed"], limit=50)), 0),
        ("TIs of a run (compacted)", lambda r: r.task_instances.snapshot("dag_0007", some_run), 1),
        ("TIs of a run (active)", lambda r: r.task_instances.snapshot("dag_0020", dag_run("dag_0020",
                                                                                          runs_per_dag).run_id), 1),
        ("try history of a TI", lambda r: r.task_instances.tries(TIKey("dag_0007", some_run, "task_03")), 1),
        ("audit log newest 50", lambda r: r.audit.list(limit=50), 2),
    ]
    for label, fn, _ in paths:
        for mode in ("projection", "scan"):
            if mode == "scan" and label.startswith(("TIs", "try", "audit")):
                continue
            # A long-lived aggregate, as in the API process, on a store wrapper that counts requests.
            counting = CountingStore(store)
            target = Repositories.open(counting, root=root)  # type: ignore[arg-type]
            if mode == "projection":
                target.runs.projection = api.projection
            fn(target)  # warm-up (first audit page fills the settled-day counts)
            counting.reset()
            lat = []
            n = reps if mode == "projection" else max(3, reps // 10)  # scans are slow; fewer samples
            for _ in range(n):
                t = time.perf_counter()
                fn(target)
                lat.append(time.perf_counter() - t)
            reads = counting.reset()["reads"]
            print(f"  {label:38s} [{mode:10s}] {ms(lat)}  store requests/call {reads / n:.0f}")
    api.close()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller scale (CI smoke)")
    parser.add_argument("--backends", default="sqlite,consul-fake")
    parser.add_argument("--sections", default="1,2,3,4,5")
    args = parser.parse_args()
    which = args.backends.split(",")
    sections = set(args.sections.split(","))
    mixed_runs, growth_runs = (20, 100) if args.quick else (100, 1000)
    dags, runs_per_dag, reps = (100, 10, 20) if args.quick else (1000, 10, 100)
    with backends(which) as bs:
        if sections & {"1", "2"}:
            section_ops_and_bytes(bs[0][1])  # counted on SQLite: the counts do not depend on the backend
        for name, make in bs[1:]:
            if "3" in sections:
                section_mixed(name, make, mixed_runs)
            if "4" in sections:
                section_growth(name, make, growth_runs)
            if "5" in sections:
                section_reads(name, make, dags, runs_per_dag, 10, reps)
    print(f"\nPython {'.'.join(map(str, __import__('sys').version_info[:3]))}; "
          f"statistics: p50/p99 over individual calls ({statistics.__name__}).")


if __name__ == "__main__":
    main()
