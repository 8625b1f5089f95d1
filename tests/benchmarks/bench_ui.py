"""Server cost of one poll cycle of the Airflow UI's DAG page, with 100 runs x 50 tasks in the store.

    .venv/bin/python -m tests.benchmarks.bench_ui                # 50 cycles
    .venv/bin/python -m tests.benchmarks.bench_ui --cycles 200 --no-compact

The store (SQLite) holds one DAG of 50 tasks (5 layers of 10) and 100 runs of it with 5,000 task
instances: 98 finished (compacted, as the scheduler leaves them), one running, one queued. The app
is the real leoflow-server Falcon app with its production context (run projection on), called
in-process through WSGI, so the figures are the server's cost without sockets or the client.

A "poll cycle" is every request the DAG page (``/dags/{dag_id}``, grid + overview) makes, as
recorded from the real UI in research/airflow_ui_endpoints.md (dag_overview: 26 calls, including
the 10-run ``ti_summaries`` NDJSON). While a run is active the UI re-issues these every
``auto_refresh_interval``; the target is < 50 ms for the whole cycle. Nothing is asserted.

The heap is frozen after loading, as leoflow-server's workers do. Besides wall time the script
prints the cycle's CPU time (the same code on a busy machine: wall p99 minus CPU p99 is other
processes) and the pauses of each GC generation, so a p99 outlier can be attributed.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import falcon.testing

from leoflow.api.context import build_context
from leoflow.api.server import create_app
from leoflow.config import Config
from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import DagRun, TaskInstance, User
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.sqlite import SqliteStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAG_ID = "wide"


def build_dag() -> DAG:
    tasks: dict[str, Task] = {}
    for layer in range(5):
        for i in range(10):
            tid = f"l{layer}_t{i}"
            ups = frozenset(f"l{layer - 1}_t{j}" for j in range(10)) if layer else frozenset()
            tasks[tid] = Task(tid, command=("echo", tid), upstream=ups)
    return DAG(dag_id=DAG_ID, tasks=tasks, schedule="@hourly", tags=("bench",), is_paused_upon_creation=False,
               fileloc="dags/wide.yaml")


def seed(ctx: object, compact: bool) -> list[str]:
    repos = ctx.repos  # type: ignore[attr-defined]
    dag = build_dag()
    repos.dags.record_version(dag, "# wide\n", bundle_name="dags-folder", bundle_version="c" * 40,
                              now=NOW - timedelta(days=10))
    run_ids = []
    for n in range(100):
        start = NOW - timedelta(hours=100 - n)
        if n == 99:
            state = DagRunState.QUEUED
        elif n == 98:
            state = DagRunState.RUNNING
        else:
            state = DagRunState.FAILED if n % 7 == 0 else DagRunState.SUCCESS
        run = DagRun(dag_id=DAG_ID, run_id=f"scheduled__{start.isoformat()}", run_type=DagRunType.SCHEDULED,
                     state=state, run_after=start, dag_version_number=1, bundle_version="c" * 40, logical_date=start,
                     data_interval_start=start, data_interval_end=start, queued_at=start,
                     start_date=start if state != DagRunState.QUEUED else None,
                     end_date=start + timedelta(minutes=20) if state.finished else None)
        tis = []
        for k, task_id in enumerate(dag.tasks):
            if state == DagRunState.QUEUED:
                ti_state, t0 = None, None
            elif state == DagRunState.RUNNING:
                ti_state = S.SUCCESS if k < 20 else (S.RUNNING if k < 25 else None)
                t0 = start + timedelta(seconds=10 * k)
            else:
                ti_state = S.FAILED if (state == DagRunState.FAILED and k == 30) else (
                    S.UPSTREAM_FAILED if state == DagRunState.FAILED and k > 30 else S.SUCCESS)
                t0 = start + timedelta(seconds=10 * k)
            ended = ti_state in (S.SUCCESS, S.FAILED)
            tis.append(TaskInstance(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id, state=ti_state,
                                    try_number=1 if t0 else 0, start_date=t0,
                                    end_date=t0 + timedelta(seconds=8) if ended and t0 else None,
                                    executor="agents", dag_version_number=1))
        repos.runs.create(run, tis)
        if compact and state.finished:
            repos.runs.compact(DAG_ID, run.run_id)
        run_ids.append(run.run_id)
    return run_ids


def cycle_requests(run_ids: list[str]) -> list[str]:
    """The DAG page's calls (research/airflow_ui_endpoints.md, screen dag_overview), newest runs first."""
    d = DAG_ID
    recent = list(reversed(run_ids))[:10]
    day_ago = (NOW - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    now = NOW.isoformat().replace("+00:00", "Z")
    window = f"run_after_gte={quote(day_ago)}&run_after_lte={quote(now)}"
    ti_summaries = urlencode([("run_ids", r) for r in recent])
    hitl = ("order_by=dag_id&order_by=run_after&order_by=created_at&order_by=task_display_name"
            "&state=deferred&state=awaiting_input&response_received=false")
    return [
        "/api/v2/version",
        "/ui/config",
        "/ui/auth/menus",
        "/ui/auth/me",
        "/api/v2/plugins",
        f"/api/v2/dags/{d}/details",
        f"/ui/backfills?dag_id={d}&active=true",
        f"/ui/grid/runs/{d}?offset=0&limit=11&order_by=-run_after",
        f"/ui/grid/runs/{d}?limit=1&order_by=-run_after",
        f"/ui/grid/runs/{d}?limit=10&order_by=-run_after",
        f"/ui/grid/structure/{d}?include_upstream=false&include_downstream=false&limit=10&order_by=-run_after",
        f"/api/v2/dags/{d}",
        "/api/v2/importErrors?filename=",
        f"/ui/dags/{d}/deadlineAlerts?limit=100",
        f"/api/v2/dags/{d}/dagRuns?limit=1&state=running&state=queued",
        f"/api/v2/dags/{d}/dagRuns/~/taskInstances?{window}&state=failed&order_by=-run_after",
        f"/api/v2/dags/{d}/dagRuns?limit=10&{window}&state=failed",
        f"/api/v2/assets/events?limit=10&order_by=-timestamp&source_dag_id={d}&timestamp_gte={quote(day_ago)}"
        f"&timestamp_lte={quote(now)}",
        f"/api/v2/dagWarnings?dag_id={d}",
        f"/ui/dags/{d}/latest_run",
        f"/ui/grid/ti_summaries/{d}?{ti_summaries}",
        f"/ui/dags/{d}/deadlineAlerts",
        f"/api/v2/dags/{d}/dagRuns/~/hitlDetails?{hitl}",
        f"/ui/structure/structure_data?dag_id={d}&external_dependencies=false&version_number=1",
        "/ui/dags/~/dagRuns/~/deadlines?limit=10&offset=0&order_by=deadline_time",
        f"/api/v2/dags/{d}/dagRuns/{quote(run_ids[98], safe='')}",
    ]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--no-compact", action="store_true", help="keep finished runs as live keys")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config()
        config.home = str(Path(tmp) / "home")
        config.auth.jwt_secret = "bench-secret-" + "x" * 40
        config.server.access_log = False
        store = SqliteStore(Path(tmp) / "store.db")
        ctx = build_context(config, store=store, clock=lambda: NOW)
        t0 = time.perf_counter()
        run_ids = seed(ctx, compact=not args.no_compact)
        seeded = time.perf_counter() - t0
        app = create_app(ctx)
        ctx.repos.users.create(User(username="bench", password_hash="x", role="admin", created_at=NOW))
        bearer = {"Authorization": f"Bearer {ctx.tokens.issue('bench', 'admin')}"}
        client = falcon.testing.TestClient(app, headers=bearer)
        paths = cycle_requests(run_ids)
        if ctx.repos.projection is not None:
            ctx.repos.projection.refresh()
        # As leoflow-server's worker does once its projections are loaded (api/main.py load()):
        # what exists now leaves the collector's generations; caches filled by requests do not.
        gc.collect()
        gc.freeze()
        for path in paths:  # warm up, and prove every call answers 200 with real data
            result = client.simulate_get(path.split("?")[0], query_string=path.partition("?")[2])
            if result.status_code != 200:
                print(f"{path} -> {result.status_code}: {result.text[:300]}", file=sys.stderr)
                return 1
        per_path: dict[str, list[float]] = {p: [] for p in paths}
        totals: list[float] = []
        cpu_totals: list[float] = []
        ui_totals: list[float] = []
        gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_pauses[info["generation"]].append((time.perf_counter() - gc_started[0]) * 1000)

        gc.callbacks.append(on_gc)
        for _ in range(args.cycles):
            start = time.perf_counter()
            cpu_start = time.thread_time()
            ui_ms = 0.0
            for path in paths:
                t = time.perf_counter()
                client.simulate_get(path.split("?")[0], query_string=path.partition("?")[2])
                took = (time.perf_counter() - t) * 1000
                per_path[path].append(took)
                if path.startswith("/ui/"):
                    ui_ms += took
            totals.append((time.perf_counter() - start) * 1000)
            cpu_totals.append((time.thread_time() - cpu_start) * 1000)
            ui_totals.append(ui_ms)
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
        ctx.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench_ui: DAG page poll cycle, 1 DAG x 50 tasks, 100 runs, 5,000 TIs "
          f"({'live keys' if args.no_compact else 'finished runs compacted'}), SQLite, in-process WSGI")
    print(f"seeding: {seeded:.1f} s; {len(paths)} requests per cycle; {args.cycles} cycles")
    print(f"cycle total: median {statistics.median(totals):.1f} ms  p95 {pct(totals, 95):.1f} ms  "
          f"p99 {pct(totals, 99):.1f} ms  ({1000 / statistics.median(totals):.1f} cycles/s, "
          f"{len(paths) * 1000 / statistics.median(totals):.0f} req/s)  target < 50 ms")
    # Wall time includes other processes on a busy machine; this thread's CPU time does not. A p99
    # far above the CPU p99 is the machine, not the server; GC pauses are listed to tell them apart.
    print(f"cycle CPU time (this thread): median {statistics.median(cpu_totals):.1f} ms  "
          f"p95 {pct(cpu_totals, 95):.1f} ms  p99 {pct(cpu_totals, 99):.1f} ms")
    for gen, pauses in gc_pauses.items():
        if pauses:
            print(f"gc generation {gen}: {len(pauses)} collections ({len(pauses) / args.cycles:.2f}/cycle), "
                  f"pause median {statistics.median(pauses):.2f} ms, max {max(pauses):.2f} ms")
    n_ui = sum(1 for p in paths if p.startswith("/ui/"))
    print(f"of which the {n_ui} /ui/* calls: median {statistics.median(ui_totals):.1f} ms  "
          f"p95 {pct(ui_totals, 95):.1f} ms")
    print(f"max RSS: {rss_mb:.0f} MB")
    print("slowest calls (median ms):")
    for path, values in sorted(per_path.items(), key=lambda kv: -statistics.median(kv[1]))[:8]:
        print(f"  {statistics.median(values):6.2f}  p95 {pct(values, 95):6.2f}  {path[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
