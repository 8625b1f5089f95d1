"""Entry point of ``leoflow-server``: gunicorn (programmatic ``BaseApplication``) serving the Falcon app.

Process model and signals (gunicorn's, which is why we use it rather than re-inventing them):

* the master reads the Leoflow config, validates it, creates the standalone JWT key once, then
  forks ``[server] workers`` workers (``gthread`` with ``threads`` threads when threads > 1);
  each worker builds its own ``AppContext`` (its own store connection) and app;
* **SIGHUP**: the master re-reads the config; if it is valid, new workers start with it and the
  old ones finish their in-flight requests and exit (graceful reload, bind changes included). An
  invalid config is logged and the running config is kept: a typo never takes the server down.
  The ``[ui] connection_types_file`` is part of the config here: read and validated by the
  master, a bad file at start fails it in one line, on SIGHUP keeps the old types (adr/0067);
* **SIGTERM**: graceful stop — no new connections, in-flight requests finish within
  ``[server] graceful_timeout``, then the workers exit (drain);
* modules are imported once in the master (workers fork ready to serve); SIGHUP reloads the
  config, not the code — deploy new code with a restart;
* metrics: ``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh private directory before anything
  imports prometheus-client, so ``/metrics`` on any worker aggregates all workers; a dead
  worker's files are marked dead.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leoflow.config import Config, ConfigError, load
from leoflow.observe.logging import configure

log = logging.getLogger("leoflow.server")


def gunicorn_options(config: Config) -> dict[str, Any]:
    server = config.server
    threads = max(1, server.threads)
    return {
        "bind": [server.bind],
        "workers": max(1, server.workers),
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": server.timeout,
        "graceful_timeout": server.graceful_timeout,
        "keepalive": server.keepalive,
        # Our middleware writes the structured access log (with request id, user, route); gunicorn's own
        # combined-format line would duplicate it, so it is off. Errors still go to stderr.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": config.logging.level.lower(),
        "proc_name": "leoflow-server",
        "limit_request_line": 8190,
        "preload_app": False,
        # gunicorn 27's control socket defaults to one path under $HOME shared by every server of
        # the user; Leoflow is driven by signals, so it is off.
        "control_socket_disable": True,
    }


def _prepare_multiproc_dir(config: Config) -> Path:
    """A fresh per-master directory for prometheus multiprocess files (stale files would add up)."""
    existing = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if existing:
        path = Path(existing)
        path.mkdir(parents=True, exist_ok=True)
        for child in path.glob("*.db"):
            child.unlink()
        return path
    base = config.home_path / "run"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"prometheus-{os.getpid()}-", dir=base))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def build_application(config_path: str | None, overrides: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication

    class LeoflowServer(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.config_path = config_path
            self.overrides = overrides
            self.leoflow_config: Config | None = None
            super().__init__()

        def load_config(self) -> None:
            try:
                config = load(self.config_path)
                for key, value in self.overrides.items():
                    setattr(config.server, key, value)
                from leoflow.api.auth.tokens import load_signing_key

                load_signing_key(config)  # create the standalone key before forking: one key for all workers
                from leoflow.api.ui import connection_types

                # Read and validated here, once, and inherited by the forked workers (adr/0067).
                connection_types.preload(config)
            except (ConfigError, ValueError, OSError) as exc:
                if self.leoflow_config is None:
                    raise
                log.error("config reload failed; keeping the running config", extra={"error": str(exc)})
                config = self.leoflow_config
            else:
                if self.leoflow_config is not None:
                    log.info("config reloaded", extra={"bind": config.server.bind, "workers": config.server.workers})
            self.leoflow_config = config
            configure("leoflow-server", config.logging.level)
            # Import the app's modules once in the master so forked workers boot in milliseconds
            # (no app state is built here: each worker opens its own store in load()).
            from leoflow.api import server

            server.discover()
            for key, value in gunicorn_options(config).items():
                self.cfg.set(key, value)
            self.cfg.set("child_exit", _child_exit)

        def load(self) -> Any:
            from leoflow.api.context import build_context
            from leoflow.api.server import create_app

            assert self.leoflow_config is not None
            # Each blocking-query round that times out returns (and the adapter decodes) the whole
            # watched prefix: 10k runs cost ~0.2 s of CPU on Consul. A 5 s wait (ADR 0026) keeps the
            # idle cost low; changes still arrive at once. Workers never join the threads on exit.
            ctx = build_context(self.leoflow_config, projection_wait=PROJECTION_WAIT)
            app = create_app(ctx)
            # The projections (runs, DAG list) loaded above live as long as the worker: freezing
            # moves them out of the collector's generations, so full collections during requests
            # no longer scan them (their pauses were the list endpoints' p99; bench_api measures).
            gc.freeze()
            return app

    return LeoflowServer()


PROJECTION_WAIT = 5.0  # seconds per blocking query of the in-process projections (see load())


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leoflow-server",
        description="Serve Airflow 3's /api/v2, the /ui API and the Airflow UI bundle (gunicorn + Falcon). "
        "SIGHUP reloads the config gracefully; SIGTERM drains and stops.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.add_argument("--bind", help="override [server] bind, e.g. 127.0.0.1:8080")
    parser.add_argument("--workers", type=int, help="override [server] workers")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
        if config.ui.connection_types_file:
            # Only the loader: the resource module imports prometheus-client, which must not load
            # before PROMETHEUS_MULTIPROC_DIR is set below.
            from leoflow.api.ui import connection_types_file

            connection_types_file.load(config.ui.connection_types_file)  # a bad file fails here, in one line
    except ConfigError as exc:
        print(f"leoflow-server: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    if args.bind:
        overrides["bind"] = args.bind
    if args.workers is not None:
        if args.workers < 1:
            print("leoflow-server: --workers must be >= 1", file=sys.stderr)
            return 2
        overrides["workers"] = args.workers
    if args.check:
        print("config ok")
        return 0
    configure("leoflow-server", config.logging.level)
    multiproc = _prepare_multiproc_dir(config)
    master = os.getpid()
    try:
        build_application(args.config, overrides).run()
    except (ConfigError, ValueError) as exc:
        print(f"leoflow-server: {exc}", file=sys.stderr)
        return 2
    finally:
        # Workers are forked inside run() and unwind this same stack when they exit: only the
        # master may remove the directory every worker writes its metrics to.
        if os.getpid() == master and multiproc.name.startswith("prometheus-"):
            shutil.rmtree(multiproc, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
