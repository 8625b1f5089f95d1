"""Repositories run on the real SQLite adapter, and on the py-consul adapter against the fake Consul
over real HTTP where the store's semantics matter (CAS, txn errors, watch)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.store.consul import ConsulStore
from leoflow.store.port import Store
from leoflow.store.repos import Repositories
from leoflow.store.sqlite import SqliteStore
from tests.fakes.consul import FakeConsul

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.db", session_ttl_min=0.05)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "consul-fake"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "store.db", session_ttl_min=0.05)
        yield s
        s.close()
    else:
        with FakeConsul(session_ttl_min=0.05, jitter=False) as fake:
            s = ConsulStore(fake.addr, timeout=5.0)
            yield s
            s.close()


@pytest.fixture
def repos(store: Store) -> Iterator[Repositories]:
    r = Repositories.open(store, root="lf")
    yield r
    r.close()


@pytest.fixture
def srepos(sqlite_store: SqliteStore) -> Iterator[Repositories]:
    """SQLite only: for tests whose semantics do not depend on the backend."""
    r = Repositories.open(sqlite_store, root="lf")
    yield r
    r.close()


def make_run(
    dag_id: str = "etl",
    n: int = 0,
    *,
    state: DagRunState = DagRunState.QUEUED,
    run_type: DagRunType = DagRunType.SCHEDULED,
    end: bool = False,
) -> DagRun:
    when = T0 + timedelta(days=n)
    return DagRun(
        dag_id=dag_id,
        run_id=f"{run_type.value}__{when.isoformat()}",
        run_type=run_type,
        state=state,
        run_after=when,
        logical_date=when,
        dag_version_number=1,
        start_date=when if state != DagRunState.QUEUED else None,
        end_date=when + timedelta(minutes=5) if end or state.finished else None,
        conf={"n": n},
    )


def make_tis(run: DagRun, n_tasks: int = 3) -> list[TaskInstance]:
    return [TaskInstance(run.dag_id, run.run_id, f"task_{i:03d}", max_tries=2) for i in range(n_tasks)]
