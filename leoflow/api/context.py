"""The composition root of leoflow-server: one object wiring config, store, repositories, logs,
clock, tokens, tracing and the DAG-sync trigger.

Every resource gets this ``AppContext`` in ``register(app, ctx)`` and keeps a reference; nothing
in ``leoflow/api`` reaches for globals. Tests build it with ``build_context`` on a temporary
SQLite store (``tests/api/conftest.py``), passing a fixed clock and an in-memory span exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from leoflow.api.auth.ratelimit import LoginRateLimiter
from leoflow.api.auth.tokens import TokenService, load_signing_key
from leoflow.api.observe import InstrumentedStore, build_tracer
from leoflow.config import Config
from leoflow.logs.store import LogStore
from leoflow.store.port import Store
from leoflow.store.repos import Repositories

log = logging.getLogger("leoflow.api")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    config: Config
    store: Store
    repos: Repositories
    logs: LogStore
    clock: Clock
    tokens: TokenService
    login_limiter: LoginRateLimiter
    tracer: trace.Tracer
    tracer_provider: TracerProvider | None = None
    # Makes the DAG bundle fetch now (git webhook); None when this process has no DAG syncer.
    dag_sync: Callable[[], Any] | None = None
    started_at: datetime = field(default_factory=utc_now)

    @property
    def cookie_path(self) -> str:
        base = self.config.server.base_url or "/"
        if "://" in base:  # an absolute URL: only its path matters for cookies
            base = "/" + base.split("://", 1)[1].partition("/")[2]
        return base if base.endswith("/") else base + "/"

    def is_revoked(self, jti: str) -> bool:
        tokens = getattr(self.repos, "tokens", None)
        if tokens is None:
            return False
        return bool(tokens.is_revoked(jti))

    def close(self) -> None:
        # Projection first: its thread must be out of the store before the store closes.
        self.repos.close()
        self.store.close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def _open_store(config: Config) -> Store:
    from leoflow.store import factory

    return factory.open_store(config)


def _build_repos(store: Store, config: Config, clock: Clock, projection: bool, projection_wait: float) -> Repositories:
    from leoflow.store import repos

    # projection=True: run lists, latest runs and dagStats are answered from an in-process
    # projection kept fresh by a blocking watch (no store request per UI poll).
    return repos.build(store, config=config, clock=clock, projection=projection, projection_wait=projection_wait)


def _dag_sync_trigger(config: Config, repos: Any, clock: Clock) -> Callable[[], Any]:
    """The webhook's "fetch now": a request key the DAG syncer watches (it may run in another process)."""

    def trigger() -> None:
        repos.dags.request_fetch(config.dags.bundle_name, clock())

    return trigger


def logs_root(config: Config) -> Path:
    return config.home_path / "logs"


def build_context(
    config: Config,
    *,
    store: Store | None = None,
    clock: Clock = utc_now,
    span_exporter: SpanExporter | None = None,
    dag_sync: Callable[[], Any] | None = None,
    projection: bool = True,
    projection_wait: float = 0.5,
) -> AppContext:
    """Wire the real adapters; ``store``/``clock``/``span_exporter``/``dag_sync`` override for tests.

    ``projection=False`` reads runs from the store on every request (the same repository code
    path minus the in-process cache). ``projection_wait`` bounds the projection's blocking watch,
    hence how long ``close()`` takes; short-lived contexts (tests) pass a small value.
    """
    tracer, provider = build_tracer(config, span_exporter)
    raw_store = store if store is not None else _open_store(config)
    instrumented = InstrumentedStore(raw_store, tracer)
    repos = _build_repos(instrumented, config, clock, projection, projection_wait)
    tokens = TokenService(load_signing_key(config), expiry_seconds=config.auth.token_expiry_seconds, clock=clock)
    ctx = AppContext(
        config=config,
        store=instrumented,
        repos=repos,
        logs=LogStore(logs_root(config)),
        clock=clock,
        tokens=tokens,
        login_limiter=LoginRateLimiter(config.auth.login_rate_limit_per_minute, clock),
        tracer=tracer,
        tracer_provider=provider,
        dag_sync=dag_sync,
    )
    if ctx.dag_sync is None:
        ctx.dag_sync = _dag_sync_trigger(config, repos, clock)
    return ctx
