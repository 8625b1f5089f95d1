"""Benchmarks of DAG loading (issue 2). Prints figures; asserts nothing about time.

    .venv/bin/python -m tests.benchmarks.bench_dags            # 1,000 files x 10 tasks
    .venv/bin/python -m tests.benchmarks.bench_dags --files 200

1. parse 1,000 generated YAML DAG files (10 tasks each) from scratch (``load_directory``);
2. a first sync from a git repository into the SQLite store (fetch, parse, versions, file records);
3. one-file commits: the time from "a commit changed one file" to "its new version is stored"
   (``sync_once``: git fetch + diff of blob ids + parse of the changed file + store writes),
   and the parse of that one file alone. Targets: (1) < 5 s, (3) < 200 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leoflow.dags.gitsource import GitSource
from leoflow.dags.loader import load_directory, load_file
from leoflow.dags.sync import DagSync
from leoflow.store.repos.dags import DagRepository
from leoflow.store.sqlite import SqliteStore

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def dag_file(n: int, revision: int = 0) -> str:
    lines = [
        f"dag_id: bench_{n:04d}",
        f"description: generated DAG {n} (revision {revision})",
        'schedule: "0 */6 * * *"',
        "start_date: 2025-01-01",
        "tags: [bench, generated]",
        "params:",
        "  size: {default: 10, type: integer, minimum: 1}",
        "default_args:",
        "  image: busybox:1.36",
        "  retries: 2",
        "  retry_delay: 30s",
        "tasks:",
    ]
    for t in range(10):
        lines += [
            f"  - task_id: task_{t}",
            f'    command: ["echo", "dag {n} task {t} on {{{{ ds }}}} size {{{{ params.size }}}}"]',
            f'    env: {{STAGE: "{t}"}}',
        ]
        if t:
            lines.append(f"    upstream: [task_{t - 1}]" if t % 3 else f"    upstream: [task_0, task_{t - 1}]")
        if t == 9:
            lines.append("    trigger_rule: all_done")
    return "\n".join(lines) + "\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="repetitions of the full parse")
    parser.add_argument("--commits", type=int, default=20, help="one-file commits to measure")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        (root / "dags").mkdir(parents=True)
        for n in range(args.files):
            (root / "dags" / f"dag_{n:04d}.yaml").write_text(dag_file(n))
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "generated")
        print(f"# DAG loading benchmark: {args.files} YAML files x 10 tasks, {os.cpu_count()} CPU(s)")

        # 1. full parse from scratch
        times, cpu = [], []
        for _ in range(args.rounds):
            started, cpu_started = time.perf_counter(), time.process_time()
            results = load_directory(root / "dags")
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        assert all(r.ok for r in results) and len(results) == args.files
        per_file = []
        for n in range(0, args.files, max(1, args.files // 200)):
            started = time.perf_counter()
            load_file(root / "dags", f"dag_{n:04d}.yaml")
            per_file.append(time.perf_counter() - started)
        print(f"full parse: median {statistics.median(times):.3f} s, best {min(times):.3f} s "
              f"({args.files / statistics.median(times):.0f} files/s) over {args.rounds} rounds, "
              f"CPU {statistics.median(cpu):.3f} s  [target < 5 s]")
        print(f"  load average at start: {os.getloadavg()[0]:.1f}")
        print(f"  per file: median {ms(statistics.median(per_file))}, p95 {ms(pct(per_file, .95))}, "
              f"p99 {ms(pct(per_file, .99))}")

        # 2. first sync into the store
        store = SqliteStore(Path(tmp) / "leoflow.db")
        repo = DagRepository(store)
        sync = DagSync(repo, GitSource("bench", str(root), "main", Path(tmp) / "cache", "dags"))
        now = datetime(2026, 1, 1, tzinfo=UTC)
        started = time.perf_counter()
        report = sync.sync_once(now)
        first = time.perf_counter() - started
        assert report.ok and len(report.new_versions) == args.files, report.summary()
        print(f"first sync (clone + parse + store {args.files} versions): {first:.3f} s")
        started = time.perf_counter()
        idle = sync.sync_once(now)
        print(f"sync with nothing changed (fetch + diff): {ms(time.perf_counter() - started)}, "
              f"{len(idle.files_parsed)} file(s) parsed")
        started = time.perf_counter()
        listed = repo.list()
        print(f"list all {len(listed)} DAGs with latest version (one prefix read): "
              f"{ms(time.perf_counter() - started)}")

        # 3. one-file commits
        syncs, parses = [], []
        for i in range(args.commits):
            n = (i * 37) % args.files
            (root / "dags" / f"dag_{n:04d}.yaml").write_text(dag_file(n, revision=i + 1))
            git(root, "commit", "-q", "-am", f"change {n}")
            now += timedelta(minutes=1)
            started = time.perf_counter()
            report = sync.sync_once(now)
            syncs.append(time.perf_counter() - started)
            assert report.files_parsed == [f"dag_{n:04d}.yaml"] and len(report.new_versions) == 1
            started = time.perf_counter()
            load_file(root / "dags", f"dag_{n:04d}.yaml")
            parses.append(time.perf_counter() - started)
        print(f"one-file commit picked up and stored (sync_once): median {ms(statistics.median(syncs))}, "
              f"p95 {ms(pct(syncs, .95))}, p99 {ms(pct(syncs, .99))}, max {ms(max(syncs))}  [target < 200 ms]")
        print(f"  of which parsing the changed file: median {ms(statistics.median(parses))}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {rss:.0f} MiB")
        store.close()


if __name__ == "__main__":
    main()
