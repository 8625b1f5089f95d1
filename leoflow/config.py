"""One typed configuration for every process: a TOML file (rendered by consul-template in
production) overlaid by ``LEOFLOW_<SECTION>__<KEY>`` environment variables.

Unknown sections or keys are errors that name the key, so a typo in a template fails loudly
instead of being ignored. Each process calls ``load()`` at start and again on SIGHUP.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    pass


def default_home() -> Path:
    return Path(os.environ.get("LEOFLOW_HOME", str(Path.home() / ".leoflow")))


@dataclass
class StoreConfig:
    backend: str = "sqlite"  # sqlite | consul
    sqlite_path: str = ""  # default: $LEOFLOW_HOME/leoflow.db
    consul_addr: str = "http://127.0.0.1:8500"
    consul_token: str = ""
    consul_token_file: str = ""
    consul_ca_file: str = ""
    consul_cert_file: str = ""
    consul_key_file: str = ""
    consul_datacenter: str = ""
    consul_namespace: str = ""
    consul_timeout: float = 10.0
    prefix: str = "leoflow"
    retention_days: int = 30
    # Shortest session TTL accepted (Consul's agent default is 10 s; the SQLite store mirrors it).
    session_ttl_min: float = 10.0


@dataclass
class DagsConfig:
    repo: str = ""  # git URL or local path; default: the bundled examples
    ref: str = "HEAD"
    bundle_name: str = "dags-folder"
    subdir: str = ""
    fetch_interval: float = 30.0
    python_parse_timeout: float = 30.0
    python_parse_memory_mb: int = 512
    cache_dir: str = ""  # git clones of bundles; default: $LEOFLOW_HOME/bundles
    git_timeout: float = 120.0  # seconds one git fetch may take


@dataclass
class ServerConfig:
    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 4
    timeout: int = 60
    graceful_timeout: int = 30
    access_log: bool = True
    base_url: str = ""  # public URL prefix the UI is served under, e.g. "/" or "/leoflow/"
    expose_config: bool = False
    webhook_secret: str = ""  # HMAC key (GitHub/Gitea) or token (GitLab) for POST /webhooks/git
    webhook_secret_file: str = ""
    grpc_bind: str = "127.0.0.1:8793"
    # agentrpc (its own process, adr/0040): TLS is required unless grpc_bind is loopback.
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    grpc_tls_client_ca_file: str = ""  # set: agents must present a client certificate (mTLS)
    grpc_metrics_bind: str = "127.0.0.1:9466"
    grpc_container_queues: str = ""  # comma list: tasks with an image on these queues run in docker/podman
    maximum_page_limit: int = 1000  # larger `limit` values are clamped, as Airflow does
    max_body_bytes: int = 1048576  # request bodies above this are a 413 problem
    keepalive: int = 5
    tracing_enabled: bool = False  # OpenTelemetry: a span per request and per store call
    otlp_endpoint: str = ""  # e.g. http://127.0.0.1:4318/v1/traces; empty: spans are not exported


@dataclass
class AuthConfig:
    jwt_secret: str = ""  # HS256 key for UI/API sessions; from Vault in production
    jwt_secret_file: str = ""
    token_expiry_seconds: int = 86400
    login_rate_limit_per_minute: int = 10


@dataclass
class SchedulerConfig:
    executor: str = "agents"  # agents | nomad
    metrics_bind: str = "127.0.0.1:9464"
    leader_ttl: float = 15.0
    lock_delay: float = 5.0
    agent_heartbeat_timeout: float = 30.0
    # Airflow's [core] parallelism: tries queued or running at once, over all DAGs.
    parallelism: int = 32
    # Scheduled runs one DAG may get per wake-up while catching up.
    catchup_per_wakeup: int = 16
    # Longest a blocking query on the store waits before it is re-sent.
    watch_wait: float = 10.0


@dataclass
class AgentConfig:
    server: str = "127.0.0.1:8793"
    pools: str = "default"
    capacity: int = 4
    token_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    insecure: bool = False
    metrics_bind: str = "127.0.0.1:9465"
    work_dir: str = ""  # default: $LEOFLOW_HOME/agent
    id: str = ""  # default: the host name
    labels: str = ""  # comma list of key=value
    runtime: str = "auto"  # auto | process | docker | podman (container runtimes need the task's image)
    reconnect_max_backoff: float = 30.0


@dataclass
class NomadConfig:
    addr: str = "http://127.0.0.1:4646"
    token: str = ""
    token_file: str = ""
    namespace: str = "default"
    region: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify: bool = True
    datacenters: str = "dc1"  # comma list
    node_pool: str = ""
    node_class: str = ""  # constraint ${node.class} = this, when set
    meta: str = ""  # comma list of key=value added to every task job's meta
    placement_timeout: float = 300.0  # a try not placed by then fails with the scheduler's reason
    # Plain calls; blocking queries and the event stream add their own wait on top.
    timeout: float = 15.0
    blocking_wait: float = 60.0  # seconds a blocking query waits (fallback when events are off)
    job_prefix: str = "lf"  # task job ids are <prefix>-<dag>-<task>-<hash>-t<try>
    priority: int = 50
    kill_timeout: float = 30.0
    log_max_files: int = 3
    log_max_file_size_mb: int = 10
    log_drain_timeout: float = 10.0  # how long a finished try waits for its log copy before reporting
    resync_interval: float = 60.0  # one namespace-wide allocation read while tries run (lost events)
    # Vault role a task that declares connections/variables logs in with (its workload identity);
    # leoflow.secrets.bootstrap creates it. Empty: the Nomad server's default role.
    vault_role: str = "leoflow-task"


@dataclass
class VaultConfig:
    addr: str = ""
    ca_file: str = ""
    role_id_file: str = ""
    secret_id_file: str = ""
    secret_id_wrapped: bool = False
    token_file: str = ""
    identity_role: str = "leoflow-agent"
    audience: str = "leoflow-agents"
    issuer: str = ""
    jwks_url: str = ""
    jwks_file: str = ""
    kv_mount: str = "secret"
    connections_path: str = "leoflow/connections"
    variables_path: str = "leoflow/variables"
    # issue 8 additions (leoflow/secrets/)
    approle_mount: str = "approle"  # auth mount agents (and servers) log in with
    oidc_key: str = "leoflow"  # identity/oidc/key signing the agents' identity tokens (bootstrap)
    identity_ttl: str = "15m"  # life of an agent identity token (bootstrap)
    jwks_min_refresh: float = 10.0  # seconds between JWKS re-fetches triggered by an unknown kid
    session_key_path: str = ""  # KV v2 path (in kv_mount) holding the UI session signing key, field "key"
    pki_mount: str = "pki"
    pki_role: str = ""  # set: the agent gets its mTLS client certificate from <pki_mount>/issue/<role>
    pki_ttl: str = "72h"
    pki_dir: str = ""  # where the agent writes the issued certificate; default $LEOFLOW_HOME/agent-tls
    secrets_enabled: bool = True  # read connections/variables from Vault KV when vault.addr is set


@dataclass
class UiConfig:
    """What ``/ui/config`` tells the Airflow UI (Airflow's ``[api]`` options of the same names)."""

    instance_name: str = "Leoflow"
    auto_refresh_interval: int = 3  # seconds between polls while a run is active
    fallback_page_limit: int = 50
    hide_paused_dags_by_default: bool = False
    default_wrap: bool = False
    require_confirmation_dag_change: bool = False
    test_connection: str = "Disabled"  # Disabled | Enabled | Hidden
    dashboard_alert: str = ""  # shown on the home page as an info banner when set
    # YAML file of extra/overriding connection types for the connection form (adr/0067); read at
    # server start and on SIGHUP. Empty: the built-in types only.
    connection_types_file: str = ""


@dataclass
class LoggingConfig:
    level: str = "INFO"


@dataclass
class Config:
    home: str = ""
    store: StoreConfig = field(default_factory=StoreConfig)
    dags: DagsConfig = field(default_factory=DagsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    nomad: NomadConfig = field(default_factory=NomadConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ui: UiConfig = field(default_factory=UiConfig)

    @property
    def home_path(self) -> Path:
        return Path(self.home) if self.home else default_home()


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif kind is int and not isinstance(value, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    elif kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif kind is str and isinstance(value, str | int | float):
        return str(value)
    raise ConfigError(f"config key {name}: expected {kind.__name__}, got {value!r}")


def _apply(section: Any, prefix: str, values: Mapping[str, Any]) -> None:
    hints = get_type_hints(type(section))
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise ConfigError(f"unknown config key {name}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {name}: expected a table")
            _apply(current, name, value)
        else:
            setattr(section, key, _coerce(name, hints[key], value))


def known_keys() -> set[str]:
    """Every dotted key the loader accepts; tests check templates render only these."""
    keys: set[str] = set()
    defaults = Config()
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            keys |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
        else:
            keys.add(f.name)
    return keys


# Keys whose value picks one behaviour out of a few: a typo must fail loudly, not fall back silently.
_CHOICES: dict[str, tuple[str, ...]] = {
    "store.backend": ("sqlite", "consul"),
    "scheduler.executor": ("agents", "nomad"),
    "agent.runtime": ("auto", "process", "docker", "podman"),
    "ui.test_connection": ("Disabled", "Enabled", "Hidden"),
}


def _check_choices(config: Config) -> None:
    for dotted, allowed in _CHOICES.items():
        section, _, key = dotted.partition(".")
        value = getattr(getattr(config, section), key)
        if value.lower() not in {a.lower() for a in allowed}:
            raise ConfigError(f"config key {dotted}: {value!r} is not one of {', '.join(allowed)}")


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    config = Config()
    path = path or env.get("LEOFLOW_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        _apply(config, "", data)
    overrides: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if name.startswith("LEOFLOW_") and "__" in name:
            section, _, key = name[len("LEOFLOW_") :].lower().partition("__")
            overrides.setdefault(section, {})[key] = value
    _apply(config, "", overrides)
    _check_choices(config)
    if not config.home and env.get("LEOFLOW_HOME"):
        config.home = env["LEOFLOW_HOME"]
    return config
