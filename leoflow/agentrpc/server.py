"""The agentrpc process: a gRPC listener of its own (adr/0040), composed from configuration.

Why not inside gunicorn: gRPC's C core does not survive ``fork()``, and gunicorn forks its
workers; a separate process also keeps long-lived agent streams out of the HTTP worker pool. It
is stateless apart from its streams, so it runs as a second task next to ``leoflow-server`` (Nomad)
or as a child of ``leoflow standalone``, one or many replicas over the same store.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from leoflow.agentrpc.addresses import is_loopback
from leoflow.agentrpc.auth import AuthInterceptor, TokenVerifier
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.agentrpc.jwks import FileJwksSource, JwksSource, UrlJwksSource
from leoflow.agentrpc.localkeys import LOCAL_ISSUER, LocalKeyPaths, ensure_keys
from leoflow.agentrpc.service import AgentService, ServiceSettings
from leoflow.agentrpc.vault_jwks import VaultDiscoveryError, vault_verifier
from leoflow.config import Config
from leoflow.logs.store import LogStore
from leoflow.secrets.delivery import TaskSecrets, task_secrets
from leoflow.secrets.vault import VaultError
from leoflow.store.port import Store, StoreError
from leoflow.store.repos.agent_queue import AgentQueue

log = logging.getLogger(__name__)

SERVICE_NAME = "leoflow.agent.v1.AgentService"


class ServerSetupError(Exception):
    """Configuration that cannot give a safe listener; the message names the config key."""


def build_verifier(config: Config) -> TokenVerifier:
    """Vault's JWKS URL when configured, else a JWKS file, else standalone's local key (adr/0041)."""
    vault = config.vault
    try:
        from_vault = vault_verifier(vault)  # [vault] addr: issuer and JWKS discovered from Vault (adr/0091)
    except VaultDiscoveryError as exc:
        raise ServerSetupError(str(exc)) from exc
    if from_vault is not None:
        return from_vault
    source: JwksSource
    if vault.jwks_url:
        if not vault.issuer:
            raise ServerSetupError("config key vault.issuer is required with vault.jwks_url")
        source = UrlJwksSource(vault.jwks_url, ca_file=vault.ca_file or None)
        issuer = vault.issuer
    elif vault.jwks_file:
        if not vault.issuer:
            raise ServerSetupError("config key vault.issuer is required with vault.jwks_file")
        source = FileJwksSource(Path(vault.jwks_file))
        issuer = vault.issuer
    else:
        paths = LocalKeyPaths.under(config.home_path)
        ensure_keys(paths)
        source = FileJwksSource(paths.jwks)
        issuer = LOCAL_ISSUER
    return TokenVerifier(source, issuer=issuer, audience=vault.audience)


@dataclass
class _SessionKeeper:
    """Holds this server's liveness key with a store session, so the reaper sees a dead server."""

    repo: AgentQueue
    server_id: str
    ttl: float
    stop: threading.Event

    def run(self) -> None:
        session: str | None = None
        while not self.stop.is_set():
            try:
                if session is None or not self.repo.store.session_renew(session):
                    session = self.repo.store.session_create(name=f"agentrpc-{self.server_id}", ttl=self.ttl,
                                                             behavior="delete", lock_delay=0.0)
                    self.repo.hold_server_key(self.server_id, session, time.time())
            except StoreError as exc:
                log.warning("could not renew the server session", extra={"error": str(exc)})
                session = None
            self.stop.wait(self.ttl / 3)
        if session is not None:
            with contextlib.suppress(StoreError):
                self.repo.store.session_destroy(session)


class AgentRpcServer:
    def __init__(self, config: Config, store: Store, *, bind: str | None = None,
                 verifier: TokenVerifier | None = None, settings: ServiceSettings | None = None,
                 secrets: TaskSecrets | None = None) -> None:
        self.config = config
        self.bind = bind or config.server.grpc_bind
        self.repo = AgentQueue(store, config.store.prefix)
        container_queues = frozenset(q.strip() for q in config.server.grpc_container_queues.split(",") if q.strip())
        self.settings = settings or ServiceSettings(
            heartbeat_timeout=config.scheduler.agent_heartbeat_timeout,
            heartbeat_interval=max(0.2, min(5.0, config.scheduler.agent_heartbeat_timeout / 4)),
            container_queues=container_queues,
        )
        self.verifier = verifier or build_verifier(config)
        try:
            self.secrets = secrets or task_secrets(config, store)
        except VaultError as exc:
            raise ServerSetupError(str(exc)) from exc
        self.service = AgentService(self.repo, self.verifier, LogStore(config.home_path / "logs"), self.settings,
                                    secrets=self.secrets)
        self.health = health.HealthServicer()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self) -> int:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="agentrpc"),
            interceptors=[AuthInterceptor(self.verifier)],
            options=[("grpc.keepalive_permit_without_calls", 1),
                     ("grpc.http2.min_ping_interval_without_data_ms", 5000)],
        )
        pb_grpc.add_AgentServiceServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.port = self._add_port(server)
        ttl = max(10.0, self.config.store.session_ttl_min)
        keeper = _SessionKeeper(self.repo, self.settings.server_id, ttl, self._stop)
        self._keeper = threading.Thread(target=keeper.run, name="agentrpc-session", daemon=True)
        self._keeper.start()
        server.start()
        self.service.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("agentrpc listening", extra={"bind": self.bind, "port": self.port,
                                              "server_id": self.settings.server_id})
        return self.port

    def _add_port(self, server: grpc.Server) -> int:
        cfg = self.config.server
        if cfg.grpc_tls_cert_file or cfg.grpc_tls_key_file:
            if not (cfg.grpc_tls_cert_file and cfg.grpc_tls_key_file):
                raise ServerSetupError("config keys server.grpc_tls_cert_file and server.grpc_tls_key_file go together")
            try:
                key = Path(cfg.grpc_tls_key_file).read_bytes()
                cert = Path(cfg.grpc_tls_cert_file).read_bytes()
                client_ca = Path(cfg.grpc_tls_client_ca_file).read_bytes() if cfg.grpc_tls_client_ca_file else None
            except OSError as exc:
                raise ServerSetupError(f"agentrpc TLS file {exc.filename}: {exc.strerror}") from exc
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                                require_client_auth=client_ca is not None)
            port = self._bind(lambda: server.add_secure_port(self.bind, creds))
        else:
            if not is_loopback(self.bind):
                raise ServerSetupError(
                    f"config key server.grpc_bind={self.bind} is not a loopback address: set "
                    "server.grpc_tls_cert_file and server.grpc_tls_key_file (agents send bearer tokens)"
                )
            port = self._bind(lambda: server.add_insecure_port(self.bind))
        if port == 0:
            raise ServerSetupError(f"config key server.grpc_bind: cannot listen on {self.bind}")
        return port

    def _bind(self, add: Callable[[], int]) -> int:
        try:
            return add()
        except RuntimeError as exc:  # grpc raises this when the address is taken or invalid
            raise ServerSetupError(f"config key server.grpc_bind: cannot listen on {self.bind}: {exc}") from exc

    def stop(self, grace: float = 5.0) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._stop.set()
        self.service.stop()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)
        if self._keeper is not None:
            self._keeper.join(timeout=5)


def serve(config: Config, store: Store, bind: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; drains streams (agents reconnect elsewhere and resume)."""
    server = AgentRpcServer(config, store, bind=bind)
    server.start()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("agentrpc stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    server.stop()
    return 0
