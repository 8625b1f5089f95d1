"""Submission throughput/latency of the Nomad executor against the fake Nomad, and API calls per try.

    .venv/bin/python -m tests.benchmarks.bench_nomad                 # 500 submits, 50 real tries
    .venv/bin/python -m tests.benchmarks.bench_nomad --submits 2000 --tries 100

1. **Submit**: N tries are submitted one after another (as the scheduler's wake-up does), against
   a fake Nomad in its own process whose allocations finish at once (scripted ``Exit(0)``: no task
   processes, so the figure is the executor + HTTP + the fake's register path). Latency is from ``submit()`` being
   called (the decision handed over) to the job registered; prints jobs/s, p50/p99.
2. **Calls per try**: M tries run for real (raw_exec ``/bin/sh`` processes) through their whole
   life: submit, STARTED, logs copied, SUCCESS with an XCom file, acknowledged, purged. Every
   request the fake received is attributed to its try; prints calls per try besides log
   streaming (target <= 3), and the executor's own start-up calls (once per leader, not per try).

Nothing is asserted (figures only, per the project rules).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from leoflow.domain.dag import Resources
from leoflow.executors.nomad import JobSettings, NomadClient, NomadExecutor, Settings, job_id_for
from leoflow.executors.port import TryKey, TryRequest
from leoflow.logs.store import LogStore
from tests.fakes.nomad import FakeNomad


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _executor(fake: FakeNomad, tmp: Path) -> NomadExecutor:
    return NomadExecutor(NomadClient(Settings(addr=fake.addr)), LogStore(tmp / "logs"), JobSettings(),
                         log_drain_timeout=5.0, read_timeout=5.0)


_FAKE_PROCESS = """
import sys
from tests.fakes.nomad import Exit, FakeNomad
fake = FakeNomad(heartbeat=1.0).start()
fake.script("lf-*", Exit(0))
print(fake.addr, flush=True)
sys.stdin.read()
fake.stop()
"""


def bench_submit(n: int, tmp: Path) -> None:
    # The fake runs in a process of its own, so its threads do not compete with the executor's GIL.
    proc = subprocess.Popen([sys.executable, "-c", _FAKE_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stdin is not None
    addr = proc.stdout.readline().strip()
    try:
        ex = NomadExecutor(NomadClient(Settings(addr=addr)), LogStore(tmp / "logs"), JobSettings(),
                           read_timeout=5.0).start()
        latencies = []
        began = time.perf_counter()
        for i in range(n):
            req = TryRequest(TryKey("bench", f"manual__{i}", "t", -1, 1), ("/bin/true",), driver="raw_exec",
                             resources=Resources(cpu=100, memory=64))
            t0 = time.perf_counter()
            ex.submit(req)
            latencies.append(time.perf_counter() - t0)
        total = time.perf_counter() - began
        baseline = []  # one bare round trip through the same transport, for scale
        for _ in range(200):
            t0 = time.perf_counter()
            ex.client._call("status", "status", "leader")
            baseline.append(time.perf_counter() - t0)
        ex.close()
    finally:
        proc.stdin.close()
        proc.wait(10)
    print(f"submit: {n} tries in {total:.2f}s = {n / total:.0f} jobs/s; decision->registered "
          f"p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {_pct(latencies, 99) * 1000:.2f} ms, "
          f"max {max(latencies) * 1000:.2f} ms (fake Nomad in its own process; a bare GET round trip through "
          f"the same transport: p50 {statistics.median(baseline) * 1000:.2f} ms)")


def bench_calls(m: int, tmp: Path) -> None:
    with FakeNomad(heartbeat=1.0) as fake:
        ex = _executor(fake, tmp)
        ex.start()
        startup = len(fake.requests)
        keys = [TryKey("bench", f"manual__{i}", "t", -1, 1) for i in range(m)]
        began = time.perf_counter()
        for key in keys:
            ex.submit(TryRequest(key, ("/bin/sh", "-c", 'echo hi; echo "{\\"n\\": 1}" > "$LEOFLOW_XCOM_RETURN"'),
                                 driver="raw_exec", resources=Resources(cpu=100, memory=64)))
        pending = set(keys)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for event in ex.events(0.5):
                if event.terminal:
                    pending.discard(event.key)
        ex.events(0)  # acknowledge the last batch
        job_ids = {job_id_for(k): k for k in keys}
        while any(fake.job(j) is not None for j in job_ids) and time.monotonic() < deadline:
            list(ex.events(0.1))
        makespan = time.perf_counter() - began
        per_try: Counter[str] = Counter()
        logs: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        for method, path, _query in list(fake.requests)[startup:]:
            if path == "/v1/event/stream":
                kinds["event stream (shared)"] += 1
                continue
            owner = next((j for j in job_ids if j in path), None) or fake.alloc_jobs.get(path.rsplit("/", 1)[-1])
            parts = path.split("/")
            family = (f"{method} /v1/client/fs/{parts[4]}" if parts[2] == "client" else
                      f"{method} /v1/{parts[2]}" + ("/:id" if len(parts) > 3 else ""))
            if path.startswith("/v1/client/fs/logs"):
                logs[owner or "?"] += 1
                kinds["logs (streaming)"] += 1
            else:
                per_try[owner or "?"] += 1  # POST /v1/jobs carries the job in its body: "?"
                kinds[family] += 1
        ex.close()
    unattributed = per_try.get("?", 0) / m  # one register per try (its job id is in the body)
    counts = [per_try.get(j, 0) + unattributed for j in job_ids]
    print(f"calls: {m} tries end to end in {makespan:.2f}s; Nomad API calls per try besides log streaming: "
          f"max {max(counts):.0f}, mean {statistics.mean(counts):.2f} (target <= 3); log streams per try: "
          f"{statistics.mean([logs.get(j, 0) for j in job_ids]):.1f}; start-up calls once per leader: {startup}")
    print("  by endpoint:", ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--tries", type=int, default=50)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bench_submit(args.submits, Path(tmp))
        bench_calls(args.tries, Path(tmp))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
