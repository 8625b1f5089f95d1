"""Pools: slot limits are stored; slot usage is derived from task-instance states, never stored.

Storing usage counters would add a hot key written on every task transition (and a second CAS
that can conflict). Only non-finished TIs use slots and those belong to active runs, so usage is
computed from the active runs' TIs: 1 request for the active markers + 1 per active run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from leoflow.domain.dag import DEFAULT_POOL
from leoflow.domain.records import Pool, TaskInstance
from leoflow.domain.states import TaskInstanceState
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.entities import EntityRepository
from leoflow.store.repos.errors import AlreadyExists

DEFAULT_POOL_SLOTS = 128


@dataclass(frozen=True)
class PoolSlots:
    """Airflow's pool counters; ``open_slots`` may be negative when a pool was shrunk under load."""

    total: int
    occupied: int = 0
    running: int = 0
    queued: int = 0
    scheduled: int = 0
    deferred: int = 0

    @property
    def open_slots(self) -> int:
        return self.total - self.occupied if self.total >= 0 else -1


def slot_usage(pools: Iterable[Pool], tis: Iterable[TaskInstance]) -> dict[str, PoolSlots]:
    """Pure: Airflow's counting. occupied = running + queued (+ deferred when the pool includes it)."""
    pool_list = list(pools)
    counts: dict[str, dict[str, int]] = {p.name: {"running": 0, "queued": 0, "scheduled": 0, "deferred": 0}
                                         for p in pool_list}
    for t in tis:
        c = counts.get(t.pool)
        if c is None or t.state is None:
            continue
        if t.state in (TaskInstanceState.RUNNING, TaskInstanceState.RESTARTING):
            c["running"] += t.pool_slots
        elif t.state == TaskInstanceState.QUEUED:
            c["queued"] += t.pool_slots
        elif t.state == TaskInstanceState.SCHEDULED:
            c["scheduled"] += t.pool_slots
        elif t.state == TaskInstanceState.DEFERRED:
            c["deferred"] += t.pool_slots
    out = {}
    for p in pool_list:
        c = counts[p.name]
        occupied = c["running"] + c["queued"] + (c["deferred"] if p.include_deferred else 0)
        out[p.name] = PoolSlots(p.slots, occupied, c["running"], c["queued"], c["scheduled"], c["deferred"])
    return out


class PoolRepository(EntityRepository[Pool]):
    kind = "pools"
    record_type = Pool
    id_field = "name"
    noun = "pool"

    def ensure_default(self, slots: int = DEFAULT_POOL_SLOTS) -> Versioned[Pool]:
        """Create ``default_pool`` (Airflow: 128 slots) if missing; idempotent under races."""
        found = self.get(DEFAULT_POOL)
        if found is not None:
            return found
        try:
            return self.create(Pool(DEFAULT_POOL, slots, description="Default pool"))
        except AlreadyExists:
            return self.require(DEFAULT_POOL)
