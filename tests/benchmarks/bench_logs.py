"""Benchmark task-log reads: a follower's poll on a growing log, and a first page of a big log.

Why: polls continue from a byte offset, so a poll's cost is the new bytes, not the log's size.
Prints, for logs of 10k / 100k / 1M lines: the median and p95 of a poll that finds 10 new lines,
of reading the first 10k-line page, and of counting lines (agentrpc's resume), plus peak RSS.

Run: .venv/bin/python tests/benchmarks/bench_logs.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from leoflow.executors.port import TryKey  # noqa: E402
from leoflow.logs.store import LogStore  # noqa: E402


def _lines(n: int, start: int) -> list[dict[str, str]]:
    return [{"timestamp": "2026-03-01T12:00:00.000000Z", "level": "info", "event": f"line {i} " + "x" * 60,
             "logger": "task.stdout"} for i in range(start, start + n)]


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"median {statistics.median(ordered) * 1000:8.3f} ms  p95 {p95 * 1000:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as raw:
        store = LogStore(Path(raw))
        key = TryKey("bench", "manual__2026-01-01T00:00:00+00:00", "t", -1, 1)
        written = 0
        for size in (10_000, 100_000, 1_000_000):
            while written < size:
                batch = min(10_000, size - written)
                store.append(key, _lines(batch, written))
                written += batch
            polls, pages, counts = [], [], []
            for _ in range(args.repeat):
                end = store.complete_end(key)
                store.append(key, _lines(10, written))
                written += 10
                t0 = time.perf_counter()
                chunk = store.read(key, end)
                polls.append(time.perf_counter() - t0)
                assert len(chunk.lines) == 10
            for _ in range(max(3, args.repeat // 10)):
                t0 = time.perf_counter()
                store.read(key, 0, limit=10_000)
                pages.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                store.count_lines(key)
                counts.append(time.perf_counter() - t0)
            mib = store.size(key) / 2**20
            print(f"{size:>9} lines ({mib:6.1f} MiB)  poll(10 new): {_ms(polls)}  first page(10k): {_ms(pages)}  "
                  f"count_lines: {_ms(counts)}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
