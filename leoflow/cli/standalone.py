"""`leoflow standalone`: the whole system on one machine, as child processes over one SQLite store.

It adds no code path of its own (adr/0001): it prepares ``LEOFLOW_HOME`` (store, admin user, the
local agent signing key, the UI bundle) and then runs exactly the production processes —
``leoflow-server`` (gunicorn), ``leoflow agentrpc``, ``leoflow scheduler``, one
``leoflow-agent`` and the DAG bundle sync — configured through ``LEOFLOW_<SECTION>__<KEY>``
variables. A child that dies is restarted (with a bound on restarts); Ctrl-C or SIGTERM stops
every child, agent first so its tries finish or are reported, then the scheduler, the gRPC
endpoint, the server and the sync. A second start reuses everything under ``LEOFLOW_HOME``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from leoflow.cli.errors import CliError

ADMIN = "admin"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
KILL_WAIT = 5.0  # after SIGKILL: a child still there by then is stuck in the kernel; stop the others anyway


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "standalone",
        help="run server, scheduler, gRPC endpoint, a local agent and the DAG sync on this machine",
        description="Run all of Leoflow on one machine with the embedded SQLite store under LEOFLOW_HOME "
        "(default ~/.leoflow). DAGs come from the bundled jobs/ directory or --dags-repo (a git URL or "
        "local repository). The first start creates the user 'admin' and prints its generated password "
        "once (set LEOFLOW_ADMIN_PASSWORD to choose it). Ctrl-C stops everything; a second start "
        "reuses the state.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port of the UI and API (default 8080)")
    parser.add_argument("--grpc-port", type=int, default=None, help="port agents dial (default 8793)")
    parser.add_argument("--dags-repo", help="git URL or local path of the DAG repository (default: jobs/)")
    parser.add_argument("--capacity", type=int, default=None, help="tries the local agent runs at once")
    parser.add_argument("--no-ui", action="store_true", help="do not install the Airflow UI bundle")
    parser.set_defaults(func=run)


# -- preparation ------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bind_port(bind: str) -> int:
    try:
        return int(bind.rsplit(":", 1)[1])
    except (IndexError, ValueError) as exc:
        raise CliError(f"bad host:port {bind!r}") from exc


def _metrics_bind(bind: str) -> str:
    """Metrics ports are secondary: take the configured one, or any free one if it is taken."""
    if not bind:
        return ""
    port = _bind_port(bind)
    return bind if port == 0 or _port_free(port) else f"127.0.0.1:{_free_port()}"


def ensure_admin(config: Any, out: Callable[[str], None]) -> None:
    """Create `admin` once (printing a generated password once); LEOFLOW_ADMIN_PASSWORD sets it."""
    from leoflow.api.auth.passwords import generate_password, hash_password
    from leoflow.domain.records import User
    from leoflow.store.factory import open_store
    from leoflow.store.repos import build
    from leoflow.store.repos.errors import AlreadyExists

    wanted = os.environ.get("LEOFLOW_ADMIN_PASSWORD")
    if wanted is not None and len(wanted) < 8:
        raise CliError("LEOFLOW_ADMIN_PASSWORD must be at least 8 characters")
    store = open_store(config)
    try:
        repos = build(store, config=config, clock=lambda: datetime.now(UTC))
        existing = repos.users.get(ADMIN)
        if existing is not None:
            if wanted is not None:
                repos.users.set_password_hash(ADMIN, hash_password(wanted))
                out(f"Admin user: {ADMIN} (password from LEOFLOW_ADMIN_PASSWORD)")
            else:
                out(f"Admin user: {ADMIN} (password as set before; `leoflow users reset-password {ADMIN}` "
                    "to change it)")
            return
        password = wanted or generate_password()
        user = User(username=ADMIN, password_hash=hash_password(password), role="admin",
                    created_at=datetime.now(UTC))
        try:
            repos.users.create(user)
        except AlreadyExists:
            return
        if wanted is not None:
            out(f"Admin user: {ADMIN} (password from LEOFLOW_ADMIN_PASSWORD)")
        else:
            out(f"Admin user: {ADMIN}  password: {password}  (shown once; store it now)")
    finally:
        store.close()


def ensure_ui(home: Path, out: Callable[[str], None]) -> bool:
    from leoflow.ui import bundle

    if bundle.is_installed(home):
        return True
    out("Installing the Airflow UI bundle (one time; `leoflow ui install`)...")
    try:
        bundle.install(home, progress=lambda msg: out(f"  {msg}"))
    except bundle.BundleError as exc:
        out(f"warning: the UI bundle is not installed ({exc}); the API works, the UI will not load")
        return False
    return True


# -- children ---------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    _log: IO[bytes] | None = None

    def start(self) -> None:
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        # Own session: Ctrl-C reaches only standalone, which then stops children in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                # Still there (stuck in the kernel): stopping the other children matters more.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(KILL_WAIT)
        if self._log is not None:
            self._log.close()
            self._log = None


def child_env(config: Any, home: Path, *, port: int, grpc_port: int, dags_repo: str | None,
              capacity: int, metrics: dict[str, str], config_file: str | None = None) -> dict[str, str]:
    """The children's environment: the supervisor's config file plus the overrides it decided.

    ``config_file`` is passed on as an absolute ``LEOFLOW_CONFIG`` (children read their settings
    from it, not from the supervisor's memory); the ``LEOFLOW_*__*`` variables set here win over it.
    """
    env = dict(os.environ)
    env.pop("LEOFLOW_ADMIN_PASSWORD", None)  # children never need it
    if config_file:
        env["LEOFLOW_CONFIG"] = str(Path(config_file).expanduser().resolve())
    env.update({
        "LEOFLOW_HOME": str(home),
        "LEOFLOW_STORE__BACKEND": "sqlite",
        "LEOFLOW_SERVER__BIND": f"127.0.0.1:{port}",
        "LEOFLOW_SERVER__GRPC_BIND": f"127.0.0.1:{grpc_port}",
        "LEOFLOW_SERVER__GRPC_METRICS_BIND": metrics["agentrpc"],
        "LEOFLOW_SCHEDULER__EXECUTOR": "agents",
        "LEOFLOW_SCHEDULER__METRICS_BIND": metrics["scheduler"],
        "LEOFLOW_AGENT__SERVER": f"127.0.0.1:{grpc_port}",
        "LEOFLOW_AGENT__METRICS_BIND": metrics["agent"],
        "LEOFLOW_AGENT__CAPACITY": str(capacity),
        "LEOFLOW_AGENT__ID": config.agent.id or "standalone",
        "LEOFLOW_AGENT__POOLS": "*",
        "PYTHONUNBUFFERED": "1",
    })
    if dags_repo:
        env["LEOFLOW_DAGS__REPO"] = dags_repo
    return env


def build_children(env: dict[str, str], home: Path, port: int) -> list[Child]:
    py = sys.executable
    logs = home / "run" / "logs"
    # Start order; stop order is the reverse but with the agent first (see stop_all).
    specs = [
        ("server", [py, "-m", "leoflow.api.main", "--bind", f"127.0.0.1:{port}", "--workers", "1"]),
        ("agentrpc", [py, "-m", "leoflow.cli.main", "agentrpc"]),
        ("dag-sync", [py, "-m", "leoflow.cli.standalone", "dag-sync"]),
        ("scheduler", [py, "-m", "leoflow.cli.main", "scheduler"]),
        ("agent", [py, "-m", "leoflow.agent.main", "--drain-timeout", "5"]),
    ]
    return [Child(name, argv, env, logs / f"{name}.log") for name, argv in specs]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we built
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _grpc_ok(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


@dataclass
class Supervisor:
    children: list[Child]
    home: Path
    out: Callable[[str], None]
    stopping: threading.Event = field(default_factory=threading.Event)
    max_restarts: int = 5
    window: float = 60.0

    def write_state(self, info: dict[str, Any]) -> None:
        state = {**info, "pid": os.getpid(), "children": {c.name: c.pid for c in self.children}}
        path = self.home / "run" / "standalone.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def watch(self, info: dict[str, Any]) -> int:
        """Restart a child that dies (bounded); returns the exit code once stopping."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.alive() or self.stopping.is_set():
                    continue
                code = child.proc.returncode if child.proc is not None else None
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < self.window]
                if len(child.restarts) >= self.max_restarts:
                    self.out(f"error: {child.name} keeps exiting (last exit code {code}); see {child.log_path}")
                    self.stopping.set()
                    return 1
                child.restarts.append(now)
                self.out(f"{child.name} exited with code {code}; restarting (log: {child.log_path})")
                child.start()
                self.write_state(info)
        return 0

    def stop_all(self) -> None:
        """The agent first (its last reports need agentrpc), then everything else at once."""
        for child in self.children:
            if child.name == "agent":
                child.stop(STOP_TIMEOUT)
        rest = [c for c in self.children if c.name != "agent"]
        for child in rest:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for child in rest:
            child.stop(STOP_TIMEOUT)


def run(args: argparse.Namespace) -> int:
    from leoflow import config as config_mod
    from leoflow.agentrpc.localkeys import LocalKeyPaths, ensure_keys

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        config = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        raise CliError(str(exc)) from exc
    if config.store.backend != "sqlite":
        raise CliError("standalone uses the embedded store: config key store.backend must be 'sqlite'")
    home = config.home_path
    home.mkdir(parents=True, exist_ok=True)
    config.home = str(home)
    lock = open(home / "standalone.lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise CliError(f"another `leoflow standalone` is running with LEOFLOW_HOME={home}") from exc
    port = args.port if args.port is not None else _bind_port(config.server.bind)
    grpc_port = args.grpc_port if args.grpc_port is not None else _bind_port(config.server.grpc_bind)
    for what, p in (("--port", port), ("--grpc-port", grpc_port)):
        if p != 0 and not _port_free(p):
            raise CliError(f"port {p} ({what}) is already in use on 127.0.0.1; pick another with {what}")
    port = port or _free_port()
    grpc_port = grpc_port or _free_port()
    capacity = args.capacity if args.capacity is not None else config.agent.capacity
    if capacity < 1:
        raise CliError("--capacity must be at least 1")
    dags_repo = args.dags_repo
    if dags_repo and "://" not in dags_repo and not dags_repo.startswith("git@"):
        path = Path(dags_repo).expanduser()
        if not path.exists():
            raise CliError(f"--dags-repo {dags_repo}: no such directory")
        dags_repo = str(path.resolve())

    out(f"Leoflow standalone, home {home}")
    ensure_admin(config, out)
    ensure_keys(LocalKeyPaths.under(home))
    if not args.no_ui:
        ensure_ui(home, out)
    metrics = {name: _metrics_bind(bind) for name, bind in (
        ("scheduler", config.scheduler.metrics_bind), ("agent", config.agent.metrics_bind),
        ("agentrpc", config.server.grpc_metrics_bind))}
    env = child_env(config, home, port=port, grpc_port=grpc_port, dags_repo=dags_repo, capacity=capacity,
                    metrics=metrics, config_file=args.config or os.environ.get("LEOFLOW_CONFIG"))
    children = build_children(env, home, port)
    supervisor = Supervisor(children, home, out)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    base = f"http://127.0.0.1:{port}"
    info = {"port": port, "grpc_port": grpc_port, "url": base, "metrics": metrics}
    code = 1
    try:
        for child in children:
            child.start()
        supervisor.write_state(info)
        deadline = time.monotonic() + READY_TIMEOUT
        while not supervisor.stopping.is_set():
            dead = [c for c in children if not c.alive()]
            if dead:
                names = ", ".join(f"{c.name} (log: {c.log_path})" for c in dead)
                raise CliError(f"failed to start: {names}")
            if _http_ok(f"{base}/health/ready") and _grpc_ok(grpc_port):
                break
            if time.monotonic() > deadline:
                raise CliError(f"not ready after {READY_TIMEOUT:g}s; logs in {home / 'run' / 'logs'}")
            supervisor.stopping.wait(0.2)
        if supervisor.stopping.is_set():
            return 130
        out(f"Leoflow is running: UI {base}/  API {base}/api/v2  (agents dial 127.0.0.1:{grpc_port})")
        out("Press Ctrl-C to stop.")
        code = supervisor.watch(info)
    finally:
        out("Stopping...")
        supervisor.stop_all()
        with contextlib.suppress(OSError):
            (home / "run" / "standalone.json").unlink()
        lock.close()
        out("Stopped.")
    return code


# -- the DAG sync child -----------------------------------------------------------------------


def dag_sync_main(argv: Sequence[str] | None = None) -> int:
    """`python -m leoflow.cli.standalone dag-sync`: the bundle sync loop as a process of its own.

    A bad config or an unreachable store is one clear line in the child's log and exit code 1
    (the supervisor restarts it, then gives up naming the log), never a traceback.
    """
    from leoflow import config as config_mod
    from leoflow.dags.sync import sync_from_config
    from leoflow.observe.logging import configure
    from leoflow.store.factory import open_store
    from leoflow.store.port import StoreError
    from leoflow.store.repos import build

    try:
        config = config_mod.load()
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    configure("dag-sync", config.logging.level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        store = open_store(config)
    except StoreError as exc:
        print(f"error: cannot open the store: {exc}", file=sys.stderr, flush=True)
        return 1
    repos = None
    try:
        repos = build(store, config=config, clock=lambda: datetime.now(UTC))
        sync_from_config(config, repos.dags).run(stop, interval=config.dags.fetch_interval)
    except StoreError as exc:
        print(f"error: store failure: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if repos is not None:
            repos.close()
        store.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["dag-sync"]:
        sys.exit(dag_sync_main(sys.argv[2:]))
    print("usage: python -m leoflow.cli.standalone dag-sync (internal; use `leoflow standalone`)", file=sys.stderr)
    sys.exit(2)
