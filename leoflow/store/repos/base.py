"""Shared shapes of the repositories: versioned records, pages, the key layout, and txn helpers.

The key layout lives in one class (``Keyspace``) so that no other module spells a key; the ADR
``adr/0025-store-key-layout-and-read-paths.md`` documents it and what each read costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from leoflow.store import keys
from leoflow.store.fence import Fence
from leoflow.store.port import CheckSession, Op, Store, TxnResult
from leoflow.store.repos.errors import Conflict, Fenced

T = TypeVar("T")

# The leader fence (lock key + session) comes from leoflow/store/election.py; every leader-only
# txn a repository sends begins with its check-session op (Fence.wrap).
__all__ = ["Fence"]


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A record as read, with the index a compare-and-set must quote to replace it.

    ``index`` is the entry's ``modify_index``; ``create_index`` orders records by creation (it is
    Leoflow's stand-in for Airflow's integer primary key, e.g. ``order_by=id`` on runs).
    ``index == 0`` means the record was read from a compacted (packed) run: it cannot be CAS'ed
    key by key, and the task-instance repository unpacks the run first when it must change it.
    """

    record: T
    index: int
    create_index: int = 0


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total_entries: int


@dataclass(frozen=True, order=True)
class TIKey:
    """Identity of one task instance (Airflow's TaskInstanceKey without try_number)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True)
class CleanReport:
    """What `leoflow db clean` removed (or would remove, on a dry run)."""

    runs: int = 0
    audit_events: int = 0
    orphans: int = 0
    keys: int = 0
    bytes: int = 0
    dry_run: bool = False
    details: list[str] = field(default_factory=list)


_ENC = keys.encode_id


class Keyspace:
    """Every key Leoflow writes (besides the DAG repository's own, under ``<root>/dags``).

    ``<root>`` is ``[store] prefix`` (default ``leoflow``). Ids pass through ``keys.encode_id``.

    ======================================  ==================================================
    ``<root>/runs/<dag>/<run>``             DagRun JSON (always, active or finished)
    ``<root>/active/<dag>/<run>``           marker: exists iff the run is queued/running
    ``<root>/ti/<dag>/<run>/<task>/<map>``  current TaskInstance (live runs)
    ``<root>/ti/<dag>/<run>/<task>/<map>/<try>``  an earlier try (history)
    ``<root>/ti/<dag>/<run>/packed``        compacted finished run: all TIs + history in one value
    ``<root>/xcom/<dag>/<run>/<task>/<map>/<key>``  one XCom value (<= 256 KiB)
    ``<root>/connections/<id>``, ``variables/<key>``, ``pools/<name>``, ``users/<name>``
    ``<root>/audit/<yyyymmdd>/<event_log_id>``  one audit (event log) entry, bucketed by UTC day
    ======================================  ==================================================

    Within ``ti/<dag>/<run>/`` the kind of a key is told by its segment count (1: packed,
    2: current TI, 3: a history try), so a task called ``packed`` cannot collide.
    """

    def __init__(self, root: str = "leoflow") -> None:
        keys.validate_key(root)
        self.root = root

    # runs
    def run(self, dag_id: str, run_id: str) -> str:
        return keys.join(self.root, "runs", _ENC(dag_id), _ENC(run_id))

    def runs_prefix(self, dag_id: str | None = None) -> str:
        if dag_id is None:
            return keys.prefix_of(self.root, "runs")
        return keys.prefix_of(self.root, "runs", _ENC(dag_id))

    def active(self, dag_id: str, run_id: str) -> str:
        return keys.join(self.root, "active", _ENC(dag_id), _ENC(run_id))

    def active_prefix(self) -> str:
        return keys.prefix_of(self.root, "active")

    # task instances
    def ti_run_prefix(self, dag_id: str, run_id: str) -> str:
        return keys.prefix_of(self.root, "ti", _ENC(dag_id), _ENC(run_id))

    def ti_dag_prefix(self, dag_id: str | None = None) -> str:
        if dag_id is None:
            return keys.prefix_of(self.root, "ti")
        return keys.prefix_of(self.root, "ti", _ENC(dag_id))

    def ti(self, key: TIKey) -> str:
        return keys.join(self.root, "ti", _ENC(key.dag_id), _ENC(key.run_id), _ENC(key.task_id), str(key.map_index))

    def ti_try(self, key: TIKey, try_number: int) -> str:
        return keys.join(
            self.root, "ti", _ENC(key.dag_id), _ENC(key.run_id), _ENC(key.task_id), str(key.map_index),
            str(try_number),
        )

    def packed(self, dag_id: str, run_id: str) -> str:
        return keys.join(self.root, "ti", _ENC(dag_id), _ENC(run_id), "packed")

    # xcom
    def xcom(self, key: TIKey, xcom_key: str) -> str:
        return keys.join(
            self.root, "xcom", _ENC(key.dag_id), _ENC(key.run_id), _ENC(key.task_id), str(key.map_index),
            _ENC(xcom_key),
        )

    def xcom_prefix(self, dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None) -> str:
        parts = [self.root, "xcom"]
        for part in (dag_id, run_id, task_id):
            if part is None:
                break
            parts.append(_ENC(part))
        return keys.prefix_of(*parts)

    # simple entities
    def entity(self, kind: str, ident: str) -> str:
        return keys.join(self.root, kind, _ENC(ident))

    def entity_prefix(self, kind: str) -> str:
        return keys.prefix_of(self.root, kind)

    # audit log
    def audit(self, day: str, event_log_id: int) -> str:
        return keys.join(self.root, "audit", day, f"{event_log_id:019d}")

    def audit_prefix(self, day: str | None = None) -> str:
        if day is None:
            return keys.prefix_of(self.root, "audit")
        return keys.prefix_of(self.root, "audit", day)


def run_txn(store: Store, ops: Sequence[Op], *, what: str) -> TxnResult:
    """Run one transaction; a failing fence raises Fenced, any other failing check raises Conflict.

    Callers put the fence (if any) first, so ``op_index == 0`` with a CheckSession means the
    leader lock is no longer ours.
    """
    result = store.txn(list(ops))
    if result.ok:
        return result
    for err in result.errors:
        if 0 <= err.op_index < len(ops) and isinstance(ops[err.op_index], CheckSession):
            raise Fenced(f"{what}: leader fence failed ({err.what}); this process is no longer leader")
    detail = "; ".join(f"op {e.op_index} on {getattr(ops[e.op_index], 'key', '?')}: {e.what}"
                       for e in result.errors if 0 <= e.op_index < len(ops))
    raise Conflict(f"{what}: compare-and-set lost ({detail or 'transaction rejected'})")


def with_fence(fence: Fence | None, ops: Sequence[Op]) -> list[Op]:
    return fence.wrap(ops) if fence is not None else list(ops)
