"""Repositories: the only code that knows Leoflow's key layout (adr/0025).

One aggregate per process, built at its composition root::

    repos = Repositories.open(store, root=config.store.prefix)            # scheduler, CLI
    repos = Repositories.open(store, root=..., projection=True)           # leoflow-server
    repos.runs / repos.task_instances / repos.xcom / repos.connections / repos.variables /
    repos.pools / repos.users / repos.audit / repos.tokens / repos.dags
    batch = repos.batch(fence)   # the scheduler's per-wake-up WriteBatch

``build(store, config=..., clock=...)`` is the same for callers that hold a Config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leoflow.config import Config
from leoflow.store import keys
from leoflow.store.election import LeaderInfo, read_leader
from leoflow.store.port import Store
from leoflow.store.repos.audit import AuditRepository
from leoflow.store.repos.base import Fence, Keyspace, Page, TIKey, Versioned
from leoflow.store.repos.batch import BatchResult, Handle, WriteBatch
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.errors import (
    AlreadyExists,
    Conflict,
    CorruptRecord,
    Fenced,
    NotFound,
    RepoError,
    StaleTry,
    XComTooLarge,
)
from leoflow.store.repos.favorites import FavoriteRepository
from leoflow.store.repos.follower import PrefixFollower, stop_all
from leoflow.store.repos.pools import PoolRepository, PoolSlots, slot_usage
from leoflow.store.repos.projection import RunProjection
from leoflow.store.repos.query import CalendarBucket, RunQuery
from leoflow.store.repos.runs import RunRepository
from leoflow.store.repos.task_instances import RunSnapshot, TaskInstanceRepository
from leoflow.store.repos.tokens import TokenRepository
from leoflow.store.repos.users import UserRepository
from leoflow.store.repos.variables import VariableRepository
from leoflow.store.repos.xcom import XComRepository

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Repositories:
    store: Store
    keyspace: Keyspace
    runs: RunRepository
    task_instances: TaskInstanceRepository
    xcom: XComRepository
    connections: ConnectionRepository
    variables: VariableRepository
    pools: PoolRepository
    users: UserRepository
    audit: AuditRepository
    tokens: TokenRepository
    favorites: FavoriteRepository
    projection: RunProjection | None = None
    clock: Clock = _utc_now
    _dags: Any = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        store: Store,
        *,
        root: str = "leoflow",
        projection: bool = False,
        projection_wait: float = 0.5,
        clock: Clock = _utc_now,
    ) -> Repositories:
        """Wire every repository on ``store`` under ``root``; ``projection=True`` starts the run
        projection (load now, follow changes in a daemon thread): for long-lived readers (the API).
        ``close()`` stops it within ``projection_wait`` seconds; close the store only after."""
        ks = Keyspace(root)
        proj = RunProjection(store, ks, wait=projection_wait).start() if projection else None
        tis = TaskInstanceRepository(store, ks)
        favorites = FavoriteRepository(store, ks)
        dags = None
        if projection:  # the DAG list and import errors are mirrored too (repos/mirror.py)
            from leoflow.store.repos import dags as dags_module

            dags = dags_module.DagRepository(store, root, projection=True, projection_wait=projection_wait,
                                             favorites=favorites)
        repos = cls(
            store=store,
            keyspace=ks,
            runs=RunRepository(store, ks, tis, proj),
            task_instances=tis,
            xcom=XComRepository(store, ks),
            connections=ConnectionRepository(store, ks),
            variables=VariableRepository(store, ks),
            pools=PoolRepository(store, ks),
            users=UserRepository(store, ks),
            audit=AuditRepository(store, ks),
            tokens=TokenRepository(store, ks),
            favorites=favorites,
            projection=proj,
            clock=clock,
            _dags=dags,
        )
        if projection:  # what every request's authentication reads, mirrored too (ADR 0059)
            try:
                for mirrored in (repos.users, repos.tokens, repos.favorites):
                    mirrored.mirror(wait=projection_wait)
            except BaseException:
                repos.close()
                raise
        return repos

    @property
    def dags(self) -> Any:
        """The DAG repository (leoflow/store/repos/dags.py, owned by the DAG area), built on first use."""
        if self._dags is None:
            from leoflow.store.repos import dags as dags_module

            self._dags = dags_module.DagRepository(self.store, self.keyspace.root, favorites=self.favorites)
        return self._dags

    def batch(self, fence: Fence | None = None) -> WriteBatch:
        """A WriteBatch for one scheduler wake-up; every txn it sends starts with ``fence``."""
        return WriteBatch(self.store, self, fence)

    def ping(self) -> None:
        """One cheap read; raises StoreError when the store is unreachable (health checks)."""
        self.store.keys(self.keyspace.root + "/", "/")

    def leader(self) -> LeaderInfo | None:
        """The scheduler leader (lock ``<root>/scheduler/leader``), or None when no scheduler leads."""
        return read_leader(self.store, keys.join(self.keyspace.root, "scheduler", "leader"))

    def pool_slots(self) -> dict[str, PoolSlots]:
        """Slot usage of every pool, from the TIs of active runs (1 + one request per active run)."""
        pools = [v.record for v in self.pools.all()]
        tis = []
        for run in self.runs.active():
            tis.extend(v.record for v in self.task_instances.list_for_run(run.record.dag_id, run.record.run_id))
        return slot_usage(pools, tis)

    def close(self) -> None:
        """Stop every watch thread (all asked first, so closing takes one ``projection_wait``)."""
        followers: list[PrefixFollower] = [self.projection] if self.projection is not None else []
        if self._dags is not None:
            followers += self._dags.watchers()
        for mirrored in (self.users, self.tokens, self.favorites):
            followers += mirrored.watchers()
        stop_all(followers)


def build(
    store: Store,
    *,
    config: Config | None = None,
    clock: Clock = _utc_now,
    projection: bool = False,
    projection_wait: float = 0.5,
) -> Repositories:
    """``Repositories.open`` for callers holding a Config (root = ``[store] prefix``)."""
    root = config.store.prefix if config is not None else "leoflow"
    return Repositories.open(store, root=root, projection=projection, projection_wait=projection_wait, clock=clock)


__all__ = [
    "AlreadyExists",
    "BatchResult",
    "CalendarBucket",
    "Conflict",
    "CorruptRecord",
    "FavoriteRepository",
    "Fence",
    "Fenced",
    "Handle",
    "Keyspace",
    "NotFound",
    "Page",
    "PoolSlots",
    "RepoError",
    "Repositories",
    "RunProjection",
    "RunQuery",
    "RunSnapshot",
    "StaleTry",
    "TIKey",
    "Versioned",
    "WriteBatch",
    "XComTooLarge",
    "build",
]
