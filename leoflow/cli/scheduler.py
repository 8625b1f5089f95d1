"""`leoflow scheduler`: the leader-elected scheduler process (composition root).

SIGTERM/SIGINT stop it gracefully: work stops, leadership is released (a standby takes over at
once, no lock-delay), the process exits 0. SIGHUP reloads the config file: the log level and
``parallelism`` apply at once; keys that need a restart (store, executor, binds) are named in a
warning and keep their running values.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from leoflow import config as config_mod
from leoflow.cli.errors import CliError
from leoflow.observe.logging import configure

log = logging.getLogger("leoflow.scheduler")

EXECUTORS = ("agents", "nomad")
# What a SIGHUP cannot change in a running process: everything read once to build the store, the
# executor (``agent_heartbeat_timeout``; the Nomad executor also bakes in ``vault`` paths and the
# log directory under ``home``), the election and the watches.
_RESTART_KEYS = ("home", "store", "scheduler.executor", "scheduler.metrics_bind", "scheduler.leader_ttl",
                 "scheduler.lock_delay", "scheduler.watch_wait", "scheduler.agent_heartbeat_timeout", "nomad",
                 "vault")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scheduler",
        help="run the scheduler (leader-elected; standbys wait)",
        description="Create and drive DAG runs with Airflow's semantics. Several may run; one leads "
        "(a lock in the store), the others wait. SIGTERM stops gracefully, SIGHUP reloads the config.",
    )
    p.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    p.add_argument("--executor", choices=EXECUTORS, help="override [scheduler] executor")
    p.set_defaults(func=run)


def make_executor(cfg: config_mod.Config, store: Any) -> Any:
    name = cfg.scheduler.executor
    if name == "agents":
        from leoflow.executors.agents import AgentsExecutor

        return AgentsExecutor(store, root=cfg.store.prefix, heartbeat_timeout=cfg.scheduler.agent_heartbeat_timeout)
    if name == "nomad":
        from leoflow.executors.nomad import NomadExecutor

        return NomadExecutor.from_config(cfg, store)
    raise CliError(f"config key scheduler.executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")


def executor_registries(executor: Any) -> list[CollectorRegistry]:
    """Registries of the executor's own metrics, served on the scheduler's ``/metrics`` beside its own."""
    from leoflow.executors.nomad import NomadExecutor

    return [executor.metrics.registry] if isinstance(executor, NomadExecutor) else []


def _restart_keys_changed(old: config_mod.Config, new: config_mod.Config) -> list[str]:
    changed = []
    for dotted in _RESTART_KEYS:
        a: Any = old
        b: Any = new
        for part in dotted.split("."):
            a, b = getattr(a, part), getattr(b, part)
        if a != b:
            changed.append(dotted)
    return changed


def run(args: argparse.Namespace) -> int:
    from leoflow.scheduler.loop import Options
    from leoflow.scheduler.service import SchedulerService
    from leoflow.store.factory import open_store
    from leoflow.store.port import StoreError
    from leoflow.store.repos import build

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        raise CliError(str(exc)) from exc
    if args.executor:
        cfg.scheduler.executor = args.executor
    configure("scheduler", cfg.logging.level)
    try:
        store = open_store(cfg)
    except StoreError as exc:
        raise CliError(f"cannot open the store: {exc}") from exc
    repos = build(store, config=cfg)
    try:
        executor = make_executor(cfg, store)
    except CliError:
        repos.close()
        store.close()
        raise
    options = Options(executor_name=cfg.scheduler.executor, parallelism=cfg.scheduler.parallelism,
                      catchup_per_wakeup=cfg.scheduler.catchup_per_wakeup)
    service = SchedulerService(repos, executor, root=cfg.store.prefix, leader_ttl=cfg.scheduler.leader_ttl,
                               lock_delay=cfg.scheduler.lock_delay, options=options,
                               watch_wait=cfg.scheduler.watch_wait)
    if cfg.scheduler.metrics_bind:
        try:
            port = service.metrics.serve(cfg.scheduler.metrics_bind, extra=executor_registries(executor))
        except (OSError, ValueError) as exc:
            raise CliError(f"config key scheduler.metrics_bind={cfg.scheduler.metrics_bind}: {exc}") from exc
        log.info("metrics served", extra={"bind": cfg.scheduler.metrics_bind, "port": port})

    done = threading.Event()
    current = {"cfg": cfg}

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        done.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        try:
            new = config_mod.load(args.config)
        except config_mod.ConfigError as exc:
            log.error("config reload failed; keeping the running config", extra={"error": str(exc)})
            return
        if args.executor:
            new.scheduler.executor = args.executor
        configure("scheduler", new.logging.level)
        options.parallelism = new.scheduler.parallelism
        options.catchup_per_wakeup = new.scheduler.catchup_per_wakeup
        stale = _restart_keys_changed(current["cfg"], new)
        if stale:
            log.warning("config reloaded; these keys need a restart to apply", extra={"keys": stale})
        else:
            log.info("config reloaded")
        current["cfg"] = new

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    service.start()
    log.info("scheduler started", extra={"executor": cfg.scheduler.executor, "identity": service.elector.identity})
    try:
        while not done.wait(0.5):
            pass
    finally:
        service.stop(graceful=True)
        service.metrics.close()
        executor.close()
        repos.close()
        store.close()
    log.info("scheduler stopped")
    return 0
