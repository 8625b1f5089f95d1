"""HTTP latency of the API under concurrency, at scale, against a real ``leoflow-server`` process.

    .venv/bin/python -m tests.benchmarks.bench_api                      # SQLite and the fake Consul
    .venv/bin/python -m tests.benchmarks.bench_api --backend sqlite --requests 2000 --concurrency 8

What it does, per backend:
1. seeds 1,000 DAGs (one parsed version each, 10 tasks) and 10,000 runs with 100,000 task
   instances (finished runs compacted as retention leaves them, plus one running run per 20 DAGs),
   through the repositories' own encoders;
2. starts the real server (gunicorn + Falcon; ``--workers`` x ``--threads``) on 127.0.0.1 on that
   store (the fake Consul runs in its own process so it does not share the GIL with the server);
3. logs in with ``POST /auth/token``, warms up (``--warmup`` requests per endpoint, after the
   workers have gone idle), then sends ``--requests`` requests per endpoint
   from ``--concurrency`` client threads (keep-alive connections) and prints p50/p95/p99 and req/s:
   ``GET /api/v2/dags?limit=100``, ``GET /ui/dags?limit=50``, the grid's runs
   (``/ui/grid/runs/{dag}?limit=10&order_by=-run_after``) and one run's task instances
   (``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances``), DAGs and runs picked at random.

Latency is measured in the client (keep-alive ``http.client`` connections), so it includes HTTP,
reading the body and the client's own share of the 2 CPUs. "server CPU" is the user+system CPU
time the gunicorn master and workers spent per request (from /proc): the cost that decides how
latency grows with concurrency. Nothing is asserted (figures only, per the project rules).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from leoflow.api.auth.passwords import hash_password
from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import DagRun, TaskInstance, User
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.consul import ConsulStore
from leoflow.store.port import Op, Set, Store
from leoflow.store.repos import Repositories, codec
from leoflow.store.repos.task_instances import pack_value
from leoflow.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PASSWORD = "bench-password"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def make_dag(dag_id: str, tasks: int) -> DAG:
    built: dict[str, Task] = {}
    prev: str | None = None
    for i in range(tasks):
        tid = f"task_{i:02d}"
        built[tid] = Task(tid, command=("true",), upstream=frozenset({prev}) if prev else frozenset())
        prev = tid
    return DAG(dag_id=dag_id, tasks=built, schedule="@hourly", start_date=T0, tags=("bench", f"t{hash(dag_id) % 7}"),
               fileloc=f"dags/{dag_id}.yaml", is_paused_upon_creation=False)


def run_of(dag_id: str, n: int, state: DagRunState) -> DagRun:
    when = T0 + timedelta(hours=n)
    return DagRun(dag_id=dag_id, run_id=f"scheduled__{when.isoformat()}", run_type=DagRunType.SCHEDULED,
                  state=state, run_after=when, logical_date=when, data_interval_start=when, data_interval_end=when,
                  dag_version_number=1, queued_at=when, start_date=when,
                  end_date=when + timedelta(minutes=3) if state.finished else None)


def tis_of(run: DagRun, tasks: int, state: S | None) -> list[TaskInstance]:
    return [TaskInstance(run.dag_id, run.run_id, f"task_{i:02d}", state=state, try_number=1 if state else 0,
                         max_tries=0, operator="CommandTask", priority_weight=tasks - i, dag_version_number=1,
                         start_date=run.start_date if state else None, end_date=run.end_date if state else None)
            for i in range(tasks)]


def seed(store: Store, dags: int, runs_per_dag: int, tasks: int) -> list[tuple[str, str]]:
    """DAG versions, compacted finished runs, one running run per 20 DAGs; returns (dag, run) pairs."""
    repos = Repositories.open(store)
    ks = repos.keyspace
    pairs: list[tuple[str, str]] = []
    ops: list[Op] = []
    for d in range(dags):
        dag_id = f"dag_{d:04d}"
        repos.dags.record_version(make_dag(dag_id, tasks), f"dag_id: {dag_id}\n", bundle_name="dags-folder",
                                  bundle_version="c0ffee", now=T0)
        for r in range(runs_per_dag):
            state = DagRunState.FAILED if (d + r) % 7 == 0 else DagRunState.SUCCESS
            run = run_of(dag_id, r, state)
            tis = tis_of(run, tasks, S.SUCCESS if state is DagRunState.SUCCESS else S.FAILED)
            ops += [Set(ks.run(dag_id, run.run_id), codec.encode(run)),
                    Set(ks.packed(dag_id, run.run_id), pack_value(dag_id, run.run_id, tis, []))]
            pairs.append((dag_id, run.run_id))
            if len(ops) >= 60:
                store.txn(ops)
                ops = []
        if d % 20 == 0:
            run = run_of(dag_id, runs_per_dag, DagRunState.RUNNING)
            repos.runs.create(run, [replace(t, state=S.RUNNING) if t.task_id == "task_00" else t
                                    for t in tis_of(run, tasks, None)])
    if ops:
        store.txn(ops)
    repos.users.create(User("bench", hash_password(PASSWORD, n=2**8), "admin"))
    return pairs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_consul_process() -> Iterator[str]:
    """The fake Consul in its own interpreter (so it does not compete with the client for the GIL)."""
    code = ("import sys, time\nfrom tests.fakes.consul import FakeConsul\n"
            "f = FakeConsul(jitter=False).start()\nprint(f.addr, flush=True)\n"
            "sys.stdin.read()\nf.stop()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        addr = proc.stdout.readline().decode().strip()
        yield addr
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def server(home: Path, store_toml: str, workers: int, threads: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    config = home / "leoflow.toml"
    config.write_text(f'home = "{home}"\n{store_toml}\n[server]\nbind = "127.0.0.1:{port}"\n'
                      f'workers = {workers}\nthreads = {threads}\n[auth]\njwt_secret = "{"b" * 48}"\n'
                      '[logging]\nlevel = "WARNING"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOFLOW_")}
    env["LEOFLOW_HOME"] = str(home)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).with_name("leoflow-server")), "--config", str(config)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/health/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {home / 'server.log'}")
            time.sleep(0.2)
        # Ready means one worker answers; the others may still be loading their projections (CPU
        # that would land in the first endpoint's figures). Wait until the server idles (bounded).
        settle = time.monotonic() + 60
        while time.monotonic() < settle:
            before = server_cpu_seconds(proc.pid)
            time.sleep(0.5)
            if server_cpu_seconds(proc.pid) - before < 0.05:
                break
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the server: the gunicorn master and its workers (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that just ended
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent pid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def measure(base: str, token: str, make_path: Callable[[random.Random], str], n: int, concurrency: int,
            warmup: int) -> tuple[list[float], float, int]:
    """``n`` GETs from ``concurrency`` threads, one keep-alive ``http.client`` connection each.

    ``http.client`` rather than ``requests``: the client shares the 2 CPUs with the server, and
    requests' per-call overhead (several times http.client's) would be measured as server latency.
    """
    local = threading.local()
    errors = [0]
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}"}

    def one(i: int) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        path = make_path(random.Random(i))
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()  # the whole body inside the timing
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            errors[0] += 1
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup)))
        start = time.perf_counter()
        latencies = list(pool.map(one, range(warmup, warmup + n)))
        wall = time.perf_counter() - start
    return latencies, n / wall, errors[0]


def run_backend(name: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        consul_cm = fake_consul_process() if name == "consul-fake" else None
        addr = consul_cm.__enter__() if consul_cm else ""
        try:
            if name == "sqlite":
                db = home / "leoflow.db"
                store: Store = SqliteStore(db)
                store_toml = f'[store]\nbackend = "sqlite"\nsqlite_path = "{db}"'
            else:
                store = ConsulStore(addr, timeout=60.0)
                store_toml = f'[store]\nbackend = "consul"\nconsul_addr = "{addr}"'
            t0 = time.perf_counter()
            pairs = seed(store, args.dags, args.runs_per_dag, args.tasks)
            seeded = time.perf_counter() - t0
            store.close()
            print(f"\n== {name}: {args.dags} DAGs, {len(pairs)} finished runs + {len(range(0, args.dags, 20))} "
                  f"running, {(len(pairs) + len(range(0, args.dags, 20))) * args.tasks} task instances "
                  f"(seeded in {seeded:.1f} s)")
            with server(home, store_toml, args.workers, args.threads) as (base, pid):
                token = requests.post(base + "/auth/token", json={"username": "bench", "password": PASSWORD},
                                      timeout=30).json()["access_token"]
                endpoints: list[tuple[str, Callable[[random.Random], str]]] = [
                    ("GET /api/v2/dags?limit=100", lambda r: "/api/v2/dags?limit=100"),
                    ("GET /ui/dags?limit=50", lambda r: "/ui/dags?limit=50&dag_runs_limit=14"),
                    ("GET /ui/grid/runs/{dag}", lambda r: f"/ui/grid/runs/dag_{r.randrange(args.dags):04d}"
                                                          "?limit=10&order_by=-run_after"),
                    ("GET run's taskInstances", lambda r: "/api/v2/dags/{}/dagRuns/{}/taskInstances".format(
                        *pairs[r.randrange(len(pairs))])),
                    # Extra run-side reads: the "anything running?" probe every UI screen polls, one
                    # run, and the Browse > Task Instances page (every TI of every run, cursor mode).
                    ("GET ~/dagRuns running probe", lambda r: "/api/v2/dags/~/dagRuns?limit=1&state=running"
                                                             "&state=queued"),
                    ("GET a dagRun", lambda r: "/api/v2/dags/{}/dagRuns/{}".format(*pairs[r.randrange(len(pairs))])),
                    ("GET ~/~/taskInstances page", lambda r: "/api/v2/dags/~/dagRuns/~/taskInstances?cursor="
                                                            "&limit=50&order_by=-id"),
                ]
                if args.only:
                    endpoints = [e for e in endpoints if re.search(args.only, e[0])]
                print(f"   server: {args.workers} workers x {args.threads} threads; client: {args.concurrency} "
                      f"threads, {args.requests} requests per endpoint")
                for label, make_path in endpoints:
                    n = args.requests if "~/~" not in label else max(20, args.requests // 20)
                    warm = args.warmup if "~/~" not in label else 2
                    cpu0 = server_cpu_seconds(pid)
                    lat, rps, errs = measure(base, token, make_path, n, args.concurrency, warm)
                    cpu = (server_cpu_seconds(pid) - cpu0) / (n + warm)
                    print(f"   {label:32s} p50 {pct(lat, 50) * 1e3:7.2f} ms  p95 {pct(lat, 95) * 1e3:7.2f} ms  "
                          f"p99 {pct(lat, 99) * 1e3:7.2f} ms  mean {statistics.fmean(lat) * 1e3:7.2f} ms  "
                          f"{rps:7.1f} req/s  server CPU {cpu * 1e3:5.2f} ms/req  errors {errs}")
                    # One request alone (no concurrency): what a single UI call costs end to end.
                    solo, _, _ = measure(base, token, make_path, max(20, n // 10), 1, 5)
                    print(f"   {'  (1 client)':32s} p50 {pct(solo, 50) * 1e3:7.2f} ms  "
                          f"p99 {pct(solo, 99) * 1e3:7.2f} ms")
        finally:
            if consul_cm:
                consul_cm.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "consul-fake", "both"), default="both")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs-per-dag", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200, help="requests per endpoint first (a warm server)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--only", help="regex: measure only the endpoints whose label matches")
    args = parser.parse_args()
    print(json.dumps({k: v for k, v in vars(args).items()}))
    for name in (("sqlite", "consul-fake") if args.backend == "both" else (args.backend,)):
        run_backend(name, args)


if __name__ == "__main__":
    main()
