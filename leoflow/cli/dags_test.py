"""`leoflow dags test DAG_ID`: run one DAG once on this machine, without a server, as
``airflow dags test`` does, printing each task's result and log as it finishes.

Nothing here is a special test path: it composes the production pieces in this process — the DAG
loader on the repository directory, a throw-away SQLite store, the real scheduler service (leader
election, planning, retries, templating, trigger rules) and the local executor (the agent's
process runtime) — and watches the store until the run ends. The DAG is stored with its schedule
removed so that exactly one run (the manual one) happens, whatever its schedule and catchup say.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leoflow.cli import output
from leoflow.cli.client import EXIT_CODES_EPILOG
from leoflow.cli.errors import CliError
from leoflow.cli.output import paint, state_colour

TERMINAL_TI = ("success", "failed", "skipped", "upstream_failed", "removed")
FINISHED_RUN = ("success", "failed")


def register_test(dags_sub: argparse._SubParsersAction) -> None:
    p = dags_sub.add_parser(
        "test", help="run one DAG once on this machine (no server), printing each task's result and log",
        description="Run DAG_ID once, locally: the DAG is loaded from --repo (default: [dags] repo when it is "
                    "a local directory, else the bundled examples), stored in a temporary SQLite store and run "
                    "by the real scheduler with a local executor (tasks are local processes). Each task's "
                    "result and log are printed as it finishes; exit 1 if the run fails.",
        epilog=EXIT_CODES_EPILOG)
    p.add_argument("dag_id", metavar="DAG_ID")
    p.add_argument("--repo", metavar="PATH", help="the DAG repository directory")
    p.add_argument("--conf", metavar="JSON", help="run configuration, a JSON object")
    p.add_argument("--logical-date", metavar="ISO", help="the run's logical date (default: none)")
    p.add_argument("--capacity", type=int, default=4, metavar="N", help="tasks run at once (default 4)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the run and fail after this long (default: no limit)")
    p.add_argument("--no-logs", action="store_true", help="print results only, not task logs")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and logs and print where")
    p.set_defaults(func=cmd_test)


def _repo_path(args: argparse.Namespace) -> Path:
    from leoflow.config import ConfigError, load
    from leoflow.dags.sync import default_dags_location

    if args.repo:
        path = Path(args.repo).expanduser()
        if not path.is_dir():
            raise CliError(f"--repo {args.repo}: not a directory")
        return path
    try:
        configured = load().dags.repo
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if configured and "://" not in configured and Path(configured).expanduser().is_dir():
        return Path(configured).expanduser()
    return default_dags_location()


def _find_dag(repo: Path, dag_id: str) -> tuple[Any, str]:
    from leoflow.cli.dags import _limits
    from leoflow.dags.loader import load_directory

    results = load_directory(repo, _limits(argparse.Namespace(python_timeout=None, python_memory_mb=None)))
    for parsed in results:
        for dag in parsed.dags:
            if dag.dag_id == dag_id:
                return dag, parsed.source
    errors = [e for r in results for e in r.errors]
    known = sorted(d.dag_id for r in results for d in r.dags)
    lines = [f"DAG {dag_id!r} not found in {repo}"]
    if known:
        lines.append(f"DAGs there: {', '.join(known)}")
    if errors:
        lines.append(f"{len(errors)} file(s) failed to load (one may define it):")
        lines += [f"  {e}" for e in errors]
    raise CliError("\n".join(lines))


def _print_try(logs: Any, ti: Any, try_number: int, state: str, show_logs: bool) -> None:
    from leoflow.executors.port import TryKey

    if try_number == 0:
        label = ti.task_id if ti.map_index == -1 else f"{ti.task_id}[{ti.map_index}]"
        print(f"── {label}: {paint(state, state_colour(state))} (not run)", flush=True)
        return
    if state == "up_for_retry":
        state = "failed (will retry)"
    took = ""
    if ti.start_date is not None and ti.end_date is not None:
        took = f" in {(ti.end_date - ti.start_date).total_seconds():.3f}s"
    label = ti.task_id if ti.map_index == -1 else f"{ti.task_id}[{ti.map_index}]"
    print(f"── {label}  try {try_number}: {paint(state, state_colour(state))}{took}", flush=True)
    if not show_logs:
        return
    for entry in logs.iter_lines(TryKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, try_number)):
        line = entry.record
        stamp = str(line.get("timestamp", ""))[11:23]
        print(f"   {stamp} {str(line.get('level', '')).upper():<7} {line.get('event', '')}", flush=True)


def _ensure_pools(repos: Any, dag: Any, capacity: int) -> None:
    """The pools the DAG names exist on the server, not in the throw-away store: make them here."""
    from leoflow.domain.records import Pool

    for name in sorted({task.pool for task in dag.tasks.values()}):
        if name and repos.pools.get(name) is None:
            repos.pools.create(Pool(name=name, slots=max(capacity, 1), description="made by `leoflow dags test`"))


def _quiet_logs() -> None:
    """The scheduler's own log lines (leadership, wake-ups) are noise here; its errors are not."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("leoflow: %(name)s: %(levelname)s: %(message)s"))
    root = logging.getLogger("leoflow")
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR)
    root.propagate = False


def cmd_test(args: argparse.Namespace) -> int:
    from leoflow.cli.dags_api import parse_conf, parse_date
    from leoflow.domain.params import ParamsError, resolve_params

    conf = parse_conf(args.conf)
    logical_text = parse_date(args.logical_date, "--logical-date")
    if args.capacity < 1:
        raise CliError("--capacity must be at least 1", exit_code=2)
    repo = _repo_path(args)
    dag, source = _find_dag(repo, args.dag_id)
    try:
        resolve_params(dag, conf)
    except ParamsError as exc:
        raise CliError(f"--conf: {exc}") from None
    logical_date = datetime.fromisoformat(logical_text.replace("Z", "+00:00")) if logical_text else None
    tmp = tempfile.mkdtemp(prefix="leoflow-dags-test-")
    try:
        return _run(args, dag, source, conf, logical_date, Path(tmp))
    finally:
        if args.keep:
            output.note(f"kept the test store and logs in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, dag: Any, source: str, conf: dict[str, Any], logical_date: datetime | None,
         home: Path) -> int:
    from leoflow.config import Config
    from leoflow.domain.planning import new_task_instances
    from leoflow.domain.records import DagRun
    from leoflow.domain.states import DagRunState, DagRunType
    from leoflow.domain.timetable import generate_run_id, infer_manual_data_interval
    from leoflow.executors.local import LocalExecutor
    from leoflow.logs.store import LogStore
    from leoflow.scheduler.loop import Options
    from leoflow.scheduler.service import SchedulerService
    from leoflow.store.factory import open_store
    from leoflow.store.repos import build
    from leoflow.store.repos.base import TIKey

    _quiet_logs()
    config = Config()
    config.home = str(home)
    config.store.backend = "sqlite"
    store = open_store(config)
    repos = build(store, config=config)
    logs = LogStore(home / "logs")
    executor = LocalExecutor(logs, home / "work", capacity=args.capacity)
    now = datetime.now(UTC)
    once = dataclasses.replace(dag, schedule=None, is_paused_upon_creation=False)
    version = repos.dags.record_version(once, source, bundle_name="dags-test", bundle_version=None, now=now)
    if version is None:
        version = repos.dags.version(dag.dag_id)
    repos.dags.set_paused(dag.dag_id, False)
    _ensure_pools(repos, once, args.capacity)
    run_id = generate_run_id(DagRunType.MANUAL, now)
    interval = infer_manual_data_interval(once, logical_date) if logical_date is not None else None
    run = DagRun(dag_id=dag.dag_id, run_id=run_id, run_type=DagRunType.MANUAL, state=DagRunState.QUEUED,
                 run_after=now, dag_version_number=version.version_number, logical_date=logical_date,
                 data_interval_start=interval.start if interval else None,
                 data_interval_end=interval.end if interval else None, queued_at=now, conf=conf,
                 triggered_by="cli")
    repos.runs.create(run, new_task_instances(once, run))
    print(f"testing {dag.dag_id} ({len(dag.tasks)} tasks) from {dag.fileloc}: run {run_id}", flush=True)
    service = SchedulerService(repos, executor, root=config.store.prefix, leader_ttl=10.0, lock_delay=0.0,
                               options=Options(executor_name="local", parallelism=max(32, args.capacity)),
                               watch_wait=1.0, identity="dags-test")
    started = time.monotonic()
    printed: set[tuple[str, int, int]] = set()
    state = "running"
    try:
        service.start()
        while True:
            current = repos.runs.require(dag.dag_id, run_id).record
            state = str(current.state)
            finished: list[tuple[datetime, str, Any, int, str]] = []
            for versioned in repos.task_instances.list_for_run(dag.dag_id, run_id):
                ti = versioned.record
                key = TIKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
                for old in repos.task_instances.tries(key):
                    if old.try_number == ti.try_number:
                        continue  # the current try: printed below once it ends, never mid-way
                    if (ti.task_id, ti.map_index, old.try_number) not in printed and old.try_number > 0:
                        printed.add((ti.task_id, ti.map_index, old.try_number))
                        finished.append((old.end_date or now, ti.task_id, old, old.try_number, str(old.state)))
                ti_state = str(ti.state) if ti.state is not None else "none"
                mark = (ti.task_id, ti.map_index, ti.try_number)
                if ti_state in TERMINAL_TI and mark not in printed:
                    printed.add(mark)
                    finished.append((ti.end_date or datetime.now(UTC), ti.task_id, ti, ti.try_number, ti_state))
            for _at, _task, record, number, shown in sorted(finished, key=lambda f: (f[0], f[1])):
                _print_try(logs, record, number, shown, not args.no_logs)
            if state in FINISHED_RUN:
                break
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                print(f"leoflow: run {run_id} still {state} after {args.timeout:g}s (--timeout); stopping it",
                      file=sys.stderr)
                state = "failed"
                break
            time.sleep(0.1)
    finally:
        service.stop(graceful=True)
        executor.close()
        service.join(2.0)
        repos.close()
        store.close()
    took = time.monotonic() - started
    print(f"run {run_id} of {dag.dag_id}: {paint(state, state_colour(state))} in {took:.2f}s", flush=True)
    return 0 if state == "success" else 1
