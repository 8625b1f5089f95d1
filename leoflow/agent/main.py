"""Entry point of `leoflow-agent`: configuration, JSON logs, metrics, then the link and the runner.

Signals: the first SIGTERM/SIGINT drains (no new tries; running ones finish and are reported, up
to ``--drain-timeout``), then remaining tries are killed and reported failed; a second signal
skips the wait.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import leoflow
from leoflow import config as config_mod
from leoflow.agent.auth import TokenError, token_source
from leoflow.agent.dial import AgentIdentityInfo, DialError, DialOptions, Link
from leoflow.agent.runner import Runner
from leoflow.observe.logging import configure

log = logging.getLogger("leoflow.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leoflow-agent",
        description="Run Leoflow task tries on this host: dial the server over gRPC, authenticate with a "
        "Vault-issued (or, in standalone, locally issued) token, execute commands or containers, stream logs "
        "and results. Settings come from [agent] in the config file or LEOFLOW_AGENT__<KEY>; flags override.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.add_argument("--server", help="agentrpc address host:port ([agent] server)")
    parser.add_argument("--id", help="agent id ([agent] id, default: the host name)")
    parser.add_argument("--pools", help="comma-separated pools (task queues) to serve ([agent] pools)")
    parser.add_argument("--capacity", type=int, help="tries to run at once ([agent] capacity)")
    parser.add_argument("--work-dir", help="where outcomes and try directories live ([agent] work_dir)")
    parser.add_argument("--metrics-bind", help="host:port for /metrics ([agent] metrics_bind; empty disables)")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds to let running tries finish after SIGTERM (default 60)")
    return parser


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise config_mod.ConfigError(f"config key agent.labels: {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _start_metrics(bind: str) -> int:
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return int(server.server_port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
        agent = cfg.agent
        server = args.server or agent.server
        agent_id = args.id or agent.id or socket.gethostname()
        pools = tuple(p.strip() for p in (args.pools or agent.pools).split(",") if p.strip())
        capacity = args.capacity if args.capacity is not None else agent.capacity
        labels = _labels(agent.labels)
        if not pools:
            raise config_mod.ConfigError("config key agent.pools: at least one pool is required")
        if capacity < 1:
            raise config_mod.ConfigError("config key agent.capacity: must be at least 1")
        if agent.runtime not in ("auto", "process", "docker", "podman"):
            raise config_mod.ConfigError(f"config key agent.runtime: expected auto, process, docker or podman, "
                                         f"got {agent.runtime!r}")
    except config_mod.ConfigError as exc:
        print(f"leoflow-agent: error: {exc}", file=sys.stderr)
        return 2
    configure("agent", cfg.logging.level)
    work_dir = Path(args.work_dir or agent.work_dir or cfg.home_path / "agent")
    metrics_bind = args.metrics_bind if args.metrics_bind is not None else agent.metrics_bind
    try:
        tokens = token_source(cfg, agent_id, pools)
        tokens.token()
    except TokenError as exc:
        print(f"leoflow-agent: error: {exc}", file=sys.stderr)
        return 1
    if metrics_bind:
        try:
            port = _start_metrics(metrics_bind)
        except (OSError, ValueError) as exc:
            print(f"leoflow-agent: error: config key agent.metrics_bind={metrics_bind}: {exc}", file=sys.stderr)
            return 1
        log.info("metrics listening", extra={"bind": metrics_bind, "port": port})
    runner = Runner(work_dir, capacity, runtime=agent.runtime)
    opts = DialOptions(server, agent.tls_ca_file, agent.tls_cert_file, agent.tls_key_file, agent.insecure)
    # Vault (issue 8): keep the identity token fresh; optional mTLS certificate from Vault PKI.
    from leoflow.agent.vault_auth import VaultTokenSource
    from leoflow.agent.vault_tls import cert_keeper, with_certificate
    from leoflow.secrets.vault import VaultError

    keeper_stop = threading.Event()
    certs = cert_keeper(cfg, agent_id, tokens.session if isinstance(tokens, VaultTokenSource) else None)
    try:
        opts = with_certificate(opts, certs)
    except VaultError as exc:
        print(f"leoflow-agent: error: {exc}", file=sys.stderr)
        return 1
    for keeper in (tokens if isinstance(tokens, VaultTokenSource) else None, certs):
        if keeper is not None:
            threading.Thread(target=keeper.keep_fresh, args=(keeper_stop,), name="agent-vault", daemon=True).start()
    info = AgentIdentityInfo(agent_id, pools, labels, leoflow.__version__, socket.gethostname())
    link = Link(opts, tokens, runner, info, max_backoff=agent.reconnect_max_backoff)
    signals = threading.Event()
    hard = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signals.is_set():
            hard.set()
        signals.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failure: list[BaseException] = []

    def run_link() -> None:
        try:
            link.run()
        except DialError as exc:
            failure.append(exc)
            signals.set()
            hard.set()

    thread = threading.Thread(target=run_link, name="agent-link", daemon=True)
    thread.start()
    log.info("agent started", extra={"agent": agent_id, "pools": list(pools), "capacity": capacity,
                                     "server": server, "work_dir": str(work_dir)})
    signals.wait()
    if failure:
        print(f"leoflow-agent: error: {failure[0]}", file=sys.stderr)
        return 1
    runner.draining = True
    log.info("agent draining", extra={"running": runner.running_count()})
    deadline = time.monotonic() + args.drain_timeout
    while not hard.is_set() and time.monotonic() < deadline and not runner.idle():
        hard.wait(0.1)
    if not runner.idle():
        runner.kill_all("agent shutting down")
        runner.join(10.0)
        # A last chance to report what was killed; unreported outcomes stay on disk for the next start.
        end = time.monotonic() + 2.0
        while time.monotonic() < end and not runner.idle():
            time.sleep(0.05)
    link.stop()
    keeper_stop.set()
    if isinstance(tokens, VaultTokenSource):
        tokens.session.revoke()  # an AppRole token nobody will use again should not live on in Vault
    thread.join(timeout=5)
    log.info("agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
