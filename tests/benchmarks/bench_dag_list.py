"""The DAG list's in-process costs (ADR 0014): repository reads, the two list endpoints, GC pauses.

    .venv/bin/python -m tests.benchmarks.bench_dag_list                 # SQLite and the fake Consul
    .venv/bin/python -m tests.benchmarks.bench_dag_list --backend sqlite --requests 1000

Seeds 1,000 DAGs and 10,000 runs / 100,000 TIs (``bench_api.seed``), then prints, per backend:
1. ``DagRepository.list()`` and ``import_errors()`` without and with the projection (median, p99);
2. ``GET /api/v2/dags?limit=100`` and ``GET /ui/dags?limit=50`` served in-process (Falcon test
   client, the app's full middleware: auth, metrics, tracing), one request at a time;
3. garbage-collector pauses seen while serving those requests, before and after ``gc.freeze()``
   (what leoflow-server calls once its projections are loaded).
HTTP and concurrency are measured by ``bench_api``; nothing is asserted here (figures only).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import falcon.testing

from leoflow.api.context import build_context
from leoflow.api.server import create_app
from leoflow.config import Config
from leoflow.store.consul import ConsulStore
from leoflow.store.port import Store
from leoflow.store.repos.dags import DagRepository
from leoflow.store.sqlite import SqliteStore
from tests.benchmarks.bench_api import seed
from tests.fakes.consul import FakeConsul


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def figures(label: str, samples: list[float]) -> None:
    print(f"   {label:44s} median {statistics.median(samples) * 1e3:8.3f} ms  p99 {pct(samples, 99) * 1e3:8.3f} ms")


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


@contextmanager
def open_store(backend: str, tmp: Path) -> Iterator[Store]:
    if backend == "sqlite":
        store: Store = SqliteStore(tmp / "leoflow.db")
        yield store
        store.close()
    else:
        with FakeConsul(jitter=False) as fake:
            store = ConsulStore(fake.addr, timeout=60.0)
            yield store
            store.close()


class GcPauses:
    """Wall time of each collection, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._start)

    def summary(self) -> str:
        return ", ".join(f"gen{g}: {len(p)} x, max {max(p, default=0) * 1e3:.1f} ms, total {sum(p) * 1e3:.1f} ms"
                         for g, p in self.pauses.items())


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, open_store(backend, Path(tmp)) as store:
        started = time.perf_counter()
        seed(store, args.dags, 10, 10)
        seeded = time.perf_counter() - started
        print(f"\n== {backend}: {args.dags} DAGs, {args.dags * 10} runs (seeded in {seeded:.1f} s)")
        plain = DagRepository(store)
        mirrored = DagRepository(store, projection=True)
        try:
            n = max(20, args.requests // 10)
            figures("list() without projection (1 prefix read)", timed(plain.list, n))
            figures("list() with projection", timed(mirrored.list, args.requests))
            figures("import_errors() with projection", timed(mirrored.import_errors, args.requests))
        finally:
            mirrored.close()

        config = Config()
        config.home = str(Path(tmp) / "home")
        config.auth.jwt_secret = "b" * 48
        config.logging.level = "WARNING"
        ctx = build_context(config, store=store, projection_wait=0.2)
        try:
            client = falcon.testing.TestClient(create_app(ctx), headers={
                "Authorization": f"Bearer {ctx.tokens.issue('bench', 'admin')}"})
            paths = ["/api/v2/dags?limit=100", "/ui/dags?limit=50&dag_runs_limit=14"]
            for path in paths:
                assert client.simulate_get(path).status_code == 200
                figures(f"GET {path.split('&')[0]} (in-process)",
                        timed(lambda p=path: client.simulate_get(p), args.requests))
            for frozen in (False, True):
                if frozen:
                    gc.freeze()
                pauses = GcPauses()
                gc.callbacks.append(pauses)
                try:
                    for i in range(args.requests * 2):
                        client.simulate_get(paths[i % 2])
                finally:
                    gc.callbacks.remove(pauses)
                print(f"   GC during {args.requests * 2} requests, {'after' if frozen else 'before'} gc.freeze() "
                      f"({len(gc.get_objects())} objects tracked): {pauses.summary()}")
            gc.unfreeze()
        finally:
            ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "consul-fake", "both"), default="both")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    for backend in (("sqlite", "consul-fake") if args.backend == "both" else (args.backend,)):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
