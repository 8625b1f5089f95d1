"""CLI latency as a user feels it: wall-clock of whole `leoflow` processes (interpreter start,
imports, request), against a real standalone, and the makespan of `leoflow dags test`.

Run: .venv/bin/python -m tests.benchmarks.bench_cli [--n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cli.conftest import DAGS, LEOFLOW
from tests.e2e.conftest import DagRepo, start_standalone


def timed(argv: list[str], env: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.run([str(LEOFLOW), *argv], env=env, capture_output=True, text=True, timeout=120)
        out.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{argv}: exit {proc.returncode}: {proc.stderr}")
    return out


def show(name: str, values: list[float]) -> None:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{name:<34} n={len(values):<3} median {statistics.median(values) * 1000:7.1f} ms   "
          f"p95 {p95 * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = DagRepo(root / "repo")
        repo.path.mkdir()
        repo.git("init", "-q", "-b", "main")
        repo.commit(DAGS)
        sa = start_standalone(root / "home", repo.path)
        try:
            sa.api.wait_dag("cli_ok")
            token = str(sa.api.session.headers["Authorization"]).split(" ", 1)[1]
            env = {**os.environ, "LEOFLOW_SERVER": f"http://127.0.0.1:{sa.port}", "LEOFLOW_TOKEN": token,
                   "LEOFLOW_CLI_CONFIG": str(root / "cli.toml")}
            show("leoflow version", timed(["version"], env, args.n))
            show("leoflow dags list -o json", timed(["dags", "list", "-o", "json"], env, args.n))
            show("leoflow runs list", timed(["runs", "list"], env, args.n))
            show("leoflow dags trigger cli_ok --wait", timed(["dags", "trigger", "cli_ok", "--wait"], env,
                                                              max(3, args.n // 4)))
            show("leoflow dags test cli_ok (offline)", timed(["dags", "test", "cli_ok", "--repo", str(repo.path)],
                                                             env, max(3, args.n // 4)))
        finally:
            sa.stop()


if __name__ == "__main__":
    main()
