"""Shared fixtures for every API test (tests/api/ and tests/api/ui/).

* ``api`` — an ``ApiHarness``: the real Falcon app on a temporary SQLite store, with a fixed,
  movable clock, an in-memory span exporter, a DAG-sync trigger that counts calls, and helpers:
  ``api.client(role)`` (a ``falcon.testing.TestClient`` whose requests carry a bearer token for a
  user of that role), ``api.anon`` (no credentials), ``api.seed_dag(...)``, ``api.seed_run(...)``.
* ``client`` — shorthand for ``api.client("admin")``; ``viewer``/``user``/``op`` likewise.
* Validate every response body with ``tests.spec_validation.assert_spec(result, method, path)``.

The store, repositories and app are the real ones (no mocks of any port).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from leoflow.api.auth.passwords import hash_password
from leoflow.api.context import AppContext, build_context
from leoflow.api.server import create_app
from leoflow.config import Config
from leoflow.domain.records import User
from leoflow.store.sqlite import SqliteStore

os.environ.setdefault("LEOFLOW_CACHE", str(Path(__file__).resolve().parents[2] / ".cache"))

ROLES = ("viewer", "user", "op", "admin")
PASSWORD = "correct horse battery staple"
# Tests hash with a cheap scrypt cost; the verifier reads parameters from the hash itself.
_FAST_HASH = hash_password(PASSWORD, n=2**8)


class MovableClock:
    """The app's clock; tests move it (token expiry, rate-limit windows, heartbeat age)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class SyncCounter:
    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1


@dataclass
class ApiHarness:
    ctx: AppContext
    app: falcon.App
    clock: MovableClock
    spans: InMemorySpanExporter
    sync: SyncCounter
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def repos(self) -> Any:
        return self.ctx.repos

    @property
    def anon(self) -> falcon.testing.TestClient:
        return falcon.testing.TestClient(self.app)

    def add_user(self, username: str, role: str, password_hash: str = _FAST_HASH, active: bool = True) -> User:
        user = User(username=username, password_hash=password_hash, role=role, created_at=self.clock(),
                    active=active)
        self.repos.users.create(user)
        return user

    def token(self, role: str) -> str:
        if role not in self.tokens:
            username = f"{role}-user"
            if self.repos.users.get(username) is None:
                self.add_user(username, role)
            self.tokens[role] = self.ctx.tokens.issue(username, role)
        return self.tokens[role]

    def client(self, role: str = "admin") -> falcon.testing.TestClient:
        return falcon.testing.TestClient(self.app, headers={"Authorization": f"Bearer {self.token(role)}"})

    # ---------------------------------------------------------------- seeding

    def seed_dag(self, dag_id: str = "example", **kw: Any) -> Any:
        """Store a DAG (one version) through the DAG repository; returns what the repository returns."""
        from tests.api.seed import seed_dag

        return seed_dag(self, dag_id, **kw)

    def seed_run(self, dag_id: str, run_id: str, **kw: Any) -> Any:
        """Store a run (and its task instances) through the run repository."""
        from tests.api.seed import seed_run

        return seed_run(self, dag_id, run_id, **kw)


def make_harness(tmp_path: Path, config: Config | None = None) -> ApiHarness:
    config = config or Config()
    config.home = str(tmp_path / "leoflow-home")
    config.auth.jwt_secret = "test-secret-" + "x" * 40
    config.server.access_log = True
    clock = MovableClock(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    spans = InMemorySpanExporter()
    sync = SyncCounter()
    store = SqliteStore(tmp_path / "store.db")
    # A short projection watch keeps teardown fast (close() joins the watch thread).
    ctx = build_context(config, store=store, clock=clock, span_exporter=spans, dag_sync=sync, projection_wait=0.05)
    return ApiHarness(ctx=ctx, app=create_app(ctx), clock=clock, spans=spans, sync=sync)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    harness = make_harness(tmp_path)
    try:
        yield harness
    finally:
        harness.ctx.close()


@pytest.fixture
def client(api: ApiHarness) -> falcon.testing.TestClient:
    return api.client("admin")


@pytest.fixture
def viewer(api: ApiHarness) -> falcon.testing.TestClient:
    return api.client("viewer")


@pytest.fixture
def user(api: ApiHarness) -> falcon.testing.TestClient:
    return api.client("user")


@pytest.fixture
def op(api: ApiHarness) -> falcon.testing.TestClient:
    return api.client("op")
