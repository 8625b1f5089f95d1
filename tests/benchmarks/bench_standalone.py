"""Benchmark `leoflow standalone` with tasks running `true`: a 20-task chain and a 1 -> 100 -> 1 fan.

Prints makespan (run start to run end, from the API's run record), the gap from one task's end to
the next one's start along the chain (p50/p95), and the idle RSS/PSS of every standalone process.
Targets (issue 4, 2-core machine): chain makespan < 3 s, gap p50 < 100 ms, fan makespan < 6 s.

Run: .venv/bin/python tests/benchmarks/bench_standalone.py [--repeat N]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import DagRepo, start_standalone  # noqa: E402


def _chain(n: int) -> str:
    lines = ["dag_id: bench_chain", "is_paused_upon_creation: false", "tasks:"]
    for i in range(n):
        lines.append(f"  - task_id: t{i:02d}")
        if i:
            lines.append(f"    upstream: [t{i - 1:02d}]")
        lines.append('    command: ["true"]')
    return "\n".join(lines) + "\n"


def _fan(width: int) -> str:
    lines = ["dag_id: bench_fan", "is_paused_upon_creation: false", "max_active_tasks: 128", "tasks:",
             "  - task_id: start", '    command: ["true"]']
    for i in range(width):
        lines += [f"  - task_id: w{i:03d}", "    upstream: [start]", '    command: ["true"]']
    mids = ", ".join(f"w{i:03d}" for i in range(width))
    lines += ["  - task_id: end", f"    upstream: [{mids}]", '    command: ["true"]']
    return "\n".join(lines) + "\n"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run_once(sa, dag_id: str) -> tuple[float, list[dict]]:  # type: ignore[no-untyped-def]
    run_id = sa.api.trigger(dag_id)
    run = sa.api.wait_run(dag_id, run_id, timeout=300)
    if run["state"] != "success":
        raise SystemExit(f"{dag_id} run {run_id} ended {run['state']}")
    tis = list(sa.api.task_instances(dag_id, run_id).values())
    makespan = (_ts(run["end_date"]) - _ts(run["start_date"])).total_seconds()
    return makespan, tis


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _memory(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each DAG (default 3)")
    parser.add_argument("--capacity", type=int, default=16, help="local agent capacity (default 16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leoflow-bench-") as raw:
        tmp = Path(raw)
        repo = DagRepo(tmp / "dags")
        repo.path.mkdir()
        repo.git("init", "-q", "-b", "main")
        repo.commit({"chain.yaml": _chain(20), "fan.yaml": _fan(100)})
        started = time.monotonic()
        sa = start_standalone(tmp / "home", repo.path, extra_env={"LEOFLOW_AGENT__CAPACITY": str(args.capacity)})
        print(f"standalone ready in {time.monotonic() - started:.1f}s (agent capacity {args.capacity})")
        try:
            sa.api.wait_dag("bench_chain")
            sa.api.wait_dag("bench_fan")
            time.sleep(3.0)  # let start-up settle before the idle measurement
            pids = _process_tree(sa.proc.pid)
            mem = {pid: _memory(pid) for pid in pids}
            names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]
                     for pid in pids if Path(f"/proc/{pid}/cmdline").exists()}
            print(f"idle memory: {len(pids)} processes, RSS {sum(r for r, _ in mem.values()) / 1024:.0f} MiB, "
                  f"PSS {sum(p for _, p in mem.values()) / 1024:.0f} MiB")
            for pid, (rss, pss) in sorted(mem.items(), key=lambda kv: -kv[1][1]):
                print(f"  {pid:>7}  RSS {rss / 1024:6.1f} MiB  PSS {pss / 1024:6.1f} MiB  {names.get(pid, '?')}")

            chain_spans: list[float] = []
            gaps: list[float] = []
            for _ in range(args.repeat):
                span, tis = _run_once(sa, "bench_chain")
                chain_spans.append(span)
                ordered = sorted(tis, key=lambda ti: ti["task_id"])
                for prev, nxt in itertools.pairwise(ordered):
                    gaps.append((_ts(nxt["start_date"]) - _ts(prev["end_date"])).total_seconds())
            fan_spans = [_run_once(sa, "bench_fan")[0] for _ in range(args.repeat)]
            print(f"chain of 20 (x{args.repeat}): makespan median {statistics.median(chain_spans):.2f}s "
                  f"min {min(chain_spans):.2f}s max {max(chain_spans):.2f}s  (target < 3 s)")
            print(f"  gap end->next start: p50 {_pct(gaps, 0.5) * 1000:.0f} ms  p95 {_pct(gaps, 0.95) * 1000:.0f} ms "
                  f"p99 {_pct(gaps, 0.99) * 1000:.0f} ms  (n={len(gaps)}; target p50 < 100 ms)")
            print(f"fan 1->100->1 (x{args.repeat}): makespan median {statistics.median(fan_spans):.2f}s "
                  f"min {min(fan_spans):.2f}s max {max(fan_spans):.2f}s  (target < 6 s)")
        finally:
            sa.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
