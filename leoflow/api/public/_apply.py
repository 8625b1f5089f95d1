"""Applying a user action (clear, mark) to the store with compare-and-set.

The decision is pure (``leoflow.domain.actions``); this module reads the records in scope, asks
for the decision, and writes exactly the changed records, each guarded by the index it was read
at. All the writes of one decision go out in one transaction when they fit (64 ops), so a clear
of a run is all-or-nothing; bigger decisions go in CAS-checked chunks, and a retry after a lost
race re-reads and re-decides, which skips records that already reached their new state.

A superseded try is archived (``TaskInstanceRepository.archive_ops``) in the same transaction as
the transition that supersedes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from leoflow.domain.actions import ActionResult
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.store.port import MAX_TXN_OPS, Op
from leoflow.store.repos.base import TIKey, Versioned, run_txn
from leoflow.store.repos.errors import Conflict

RunKey = tuple[str, str]


def ti_key(ti: TaskInstance) -> TIKey:
    return TIKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


@dataclass
class Scope:
    """The runs and task instances an action reads, as versioned records (the CAS expectations)."""

    runs: dict[RunKey, Versioned[DagRun]] = field(default_factory=dict)
    tis: dict[TIKey, Versioned[TaskInstance]] = field(default_factory=dict)

    def run_records(self) -> list[DagRun]:
        return [v.record for v in self.runs.values()]

    def ti_records(self) -> list[TaskInstance]:
        return [v.record for v in self.tis.values()]


def load_scope(ctx: Any, runs: Iterable[Versioned[DagRun]], *, for_write: bool) -> Scope:
    """Read the TIs of ``runs`` (one request per run); a compacted run is unpacked before a write."""
    scope = Scope()
    repo = ctx.repos.task_instances
    for run in runs:
        r = run.record
        snap = repo.snapshot(r.dag_id, r.run_id)
        if for_write and snap.packed_index and snap.current:
            repo.unpack(TIKey(r.dag_id, r.run_id, snap.current[0].record.task_id, snap.current[0].record.map_index))
            snap = repo.snapshot(r.dag_id, r.run_id)
            run = ctx.repos.runs.get(r.dag_id, r.run_id) or run  # unpacking rewrote the run record (new index)
        scope.runs[(r.dag_id, r.run_id)] = run
        for v in snap.current:
            scope.tis[ti_key(v.record)] = v
    return scope


def apply(ctx: Any, scope: Scope, result: ActionResult) -> None:
    """Write ``result`` against ``scope``; Conflict when any record changed since it was read."""
    groups: list[list[Op]] = []
    archived = {(t.instance.dag_id, t.instance.run_id, t.instance.task_id, t.instance.map_index): t.instance
                for t in result.history}
    tis = ctx.repos.task_instances
    for old, new in zip(result.previous, result.task_instances, strict=True):
        current = scope.tis.get(ti_key(old))
        if current is None or current.record != old:
            raise Conflict(f"task instance {old.task_id!r} of run {old.run_id!r} changed since it was read")
        ops = list(tis.transition_ops(current, new))
        hist = archived.get((old.dag_id, old.run_id, old.task_id, old.map_index))
        if hist is not None and new.try_number == old.try_number:
            ops.extend(tis.archive_ops([hist]))
        groups.append(ops)
    for old_run, new_run in zip(result.previous_runs, result.runs, strict=True):
        current_run = scope.runs.get((old_run.dag_id, old_run.run_id))
        if current_run is None or current_run.record != old_run:
            raise Conflict(f"run {old_run.run_id!r} of DAG {old_run.dag_id!r} changed since it was read")
        groups.append(ctx.repos.runs.update_ops(current_run, new_run))
    _send(ctx, groups)
    # Read-your-writes for the server's run projection (RunRepository does this for its own writes).
    for new_run in result.runs:
        fresh = ctx.repos.runs.get(new_run.dag_id, new_run.run_id)
        if fresh is not None:
            ctx.repos.runs._observe(fresh)


def _send(ctx: Any, groups: list[list[Op]]) -> None:
    batch: list[Op] = []
    for ops in groups:
        if batch and len(batch) + len(ops) > MAX_TXN_OPS:
            run_txn(ctx.store, batch, what="apply action")
            batch = []
        batch.extend(ops)
    if batch:
        run_txn(ctx.store, batch, what="apply action")
