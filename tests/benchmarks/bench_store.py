"""Port-level throughput and latency of the store adapters (SQLite, Consul adapter on the fake).

    .venv/bin/python -m tests.benchmarks.bench_store [--ops 5000] [--threads 4]

Workload per backend (a leader holds a lock; every write is fenced like the scheduler's):
* ``mixed``: 45% get, 10% list of a 20-key prefix, 10% keys, 20% fenced CAS transition
  (txn [CheckSession, Cas]), 10% fenced batch txn of 10 CAS ops, 5% plain put.
* ``transitions``: only fenced single-TI transitions, from ``--threads`` threads at once
  (the scheduler's hot path; target >= 500/s on SQLite).
* ``watch latency``: time from a write to a blocked watcher returning (in-process, and across
  processes for SQLite).
Prints p50/p99 per operation, ops/s and the process RSS. The fake Consul is a Python HTTP server,
so its figures bound the adapter's overhead, not a real Consul cluster's speed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from leoflow.store.consul import ConsulStore
from leoflow.store.fence import Fence
from leoflow.store.port import Cas, Store
from leoflow.store.sqlite import SqliteStore
from tests.fakes.consul import FakeConsul

ROOT = Path(__file__).resolve().parents[2]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def setup(store: Store) -> tuple[Fence, list[str]]:
    session = store.session_create(name="bench", ttl=600, lock_delay=0)
    assert store.put("bench/leader", b"bench", acquire=session)
    keys = [f"bench/ti/k{i:03d}" for i in range(200)]
    for chunk in range(0, len(keys), 50):
        store.txn([Cas(k, b"0" * 300, 0) for k in keys[chunk:chunk + 50]])
    return Fence("bench/leader", session), keys


def bump(value: bytes) -> bytes:
    """A new ~300-byte TI-like value that always differs (a no-op write would not move the index)."""
    head = value[:12]
    return str(int(head) + 1 if head.isdigit() else 1).zfill(12).encode() + b"x" * 288


def transition(store: Store, fence: Fence, key: str) -> bool:
    for _ in range(20):
        entry = store.get(key)
        assert entry is not None
        if fence.txn(store, [Cas(key, bump(entry.value), entry.modify_index)]).ok:
            return True
    return False


def mixed(store: Store, fence: Fence, keys: list[str], ops: int) -> dict[str, list[float]]:
    rng = random.Random(1)
    timings: dict[str, list[float]] = defaultdict(list)
    choices: list[tuple[str, Callable[[], object]]] = [
        ("get", lambda: store.get(rng.choice(keys))),
        ("list", lambda: store.list(f"bench/ti/k0{rng.randint(0, 9)}")),
        ("keys", lambda: store.keys("bench/")),
        ("transition", lambda: transition(store, fence, rng.choice(keys))),
        ("batch10", lambda: batch(store, fence, rng.sample(keys, 10))),
        ("put", lambda: store.put(f"bench/misc/{rng.randint(0, 50)}", os.urandom(64))),
    ]
    weights = [45, 10, 10, 20, 10, 5]
    for _ in range(ops):
        name, fn = rng.choices(choices, weights)[0]
        started = time.perf_counter()
        fn()
        timings[name].append(time.perf_counter() - started)
    return timings


def batch(store: Store, fence: Fence, keys: list[str]) -> None:
    ops = []
    for key in keys:
        entry = store.get(key)
        assert entry is not None
        ops.append(Cas(key, bump(entry.value), entry.modify_index))
    fence.txn(store, ops)


def parallel_transitions(make: Callable[[], Store], fence: Fence, keys: list[str], threads: int,
                         per_thread: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        store = make()
        mine = keys[n::threads]
        local = []
        for i in range(per_thread):
            started = time.perf_counter()
            transition(store, fence, mine[i % len(mine)])
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def watch_latency(store: Store, writer: Store, rounds: int = 50) -> list[float]:
    out = []
    for i in range(rounds):
        index = max(store.watch("bench/w", index=0, wait=0).index, 1)
        box: list[float] = []

        def write(n: int = i, box: list[float] = box) -> None:
            time.sleep(0.005)
            box.append(time.perf_counter())
            writer.put("bench/w", str(n).encode())

        t = threading.Thread(target=write)
        t.start()
        store.watch("bench/w", index=index, wait=5)
        out.append(time.perf_counter() - box[0])
        t.join()
    return out


_CHILD_WRITER = """
import sys, time
from leoflow.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    time.sleep(0.05)
    store.put("bench/xw", repr(time.time()).encode())
"""


def cross_process_watch(db: Path, rounds: int = 30) -> list[float]:
    store = SqliteStore(db)
    store.put("bench/xw", repr(time.time()).encode())
    index = store.get("bench/xw").modify_index
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD_WRITER, str(db), str(rounds)], cwd=ROOT, env=env)
    out = []
    try:
        while len(out) < rounds:
            result = store.watch("bench/xw", index=index, wait=5)
            if result.index > index and result.entries:
                out.append(time.time() - float(result.entries[0].value))
                index = result.index
    finally:
        child.wait(timeout=60)
    return out


def report(title: str, timings: dict[str, list[float]], elapsed: float) -> None:
    total = sum(len(v) for v in timings.values())
    print(f"\n## {title}: {total} ops in {elapsed:.2f}s = {total / elapsed:,.0f} ops/s")
    print(f"{'op':<12}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, values in sorted(timings.items()):
        print(f"{name:<12}{len(values):>7}{pct(values, 0.5):>10.3f}{pct(values, 0.99):>10.3f}"
              f"{statistics.fmean(values) * 1000:>10.3f}")


def run_backend(name: str, make: Callable[[], Store], ops: int, threads: int) -> None:
    store = make()
    fence, keys = setup(store)
    started = time.perf_counter()
    timings = mixed(store, fence, keys, ops)
    report(f"{name} mixed", timings, time.perf_counter() - started)
    rate, lat = parallel_transitions(make, fence, keys, threads, max(50, ops // (threads * 4)))
    print(f"## {name} fenced transitions, {threads} threads: {rate:,.0f}/s  p50 {pct(lat, 0.5):.3f} ms"
          f"  p99 {pct(lat, 0.99):.3f} ms")
    wl = watch_latency(make(), store)
    print(f"## {name} watch wake-up after a write (same process): p50 {pct(wl, 0.5):.2f} ms"
          f"  p99 {pct(wl, 0.99):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        run_backend("sqlite", lambda: SqliteStore(db), args.ops, args.threads)
        xw = cross_process_watch(Path(tmp) / "xproc.db")
        print(f"## sqlite watch wake-up across processes: p50 {pct(xw, 0.5):.2f} ms  p99 {pct(xw, 0.99):.2f} ms")
        print(f"   file size after the run: {sum(p.stat().st_size for p in Path(tmp).glob('bench.db*')) / 1e6:.1f} MB")
    with FakeConsul() as fake:
        run_backend("consul-adapter+fake", lambda: ConsulStore(fake.addr), args.ops, args.threads)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmax RSS of the benchmark process (incl. the fake server): {rss:.0f} MB")


if __name__ == "__main__":
    main()
