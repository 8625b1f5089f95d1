"""The scheduler's write batch: the decisions of one wake-up, in as few fenced txns as possible.

Each decision (a TI transition, a run update, a run creation...) is a *group* of ops that must
apply atomically; groups are independent of each other. ``commit()`` packs groups in order into
txns of at most 64 ops (and ``MAX_TXN_BYTES``), each beginning with the leader fence
(check-session on the leader key). A txn is all-or-nothing, so when one group's CAS loses, the
txn is retried without that group: the other decisions still land, the loser is reported as a
Conflict for the scheduler to re-read and re-decide. A failing fence stops everything: ``Fenced``
is raised and groups not yet committed are never sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leoflow.domain.records import DagRun, TaskInstance
from leoflow.store.port import MAX_TXN_BYTES, MAX_TXN_OPS, Cas, CheckSession, Get, Op, Set, Store, TxnResult
from leoflow.store.repos.base import Fence, TIKey, Versioned
from leoflow.store.repos.errors import Conflict, Fenced, RepoError


@dataclass
class Handle:
    """The outcome of one decision after ``commit()``: ``result`` on success, ``error`` otherwise."""

    what: str
    ops: list[Op]
    finish: Callable[[TxnResult, int], Any]
    result: Any = None
    error: Exception | None = None
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


@dataclass
class BatchResult:
    handles: list[Handle]
    txns: int = 0
    ops: int = 0
    conflicts: list[Handle] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts


def _size(ops: Sequence[Op]) -> int:
    return sum(len(op.key) + (len(op.value) if isinstance(op, Set | Cas) else 0) for op in ops)


def _returns_entry(op: Op) -> bool:
    return isinstance(op, Set | Cas | Get)


class WriteBatch:
    """Collect decisions, then ``commit()``. Not thread-safe; one batch per scheduler wake-up."""

    def __init__(self, store: Store, repos: Any, fence: Fence | None = None) -> None:
        self.store = store
        self.repos = repos
        self.fence = fence
        self.handles: list[Handle] = []

    def __len__(self) -> int:
        return len(self.handles)

    def _add(self, what: str, ops: list[Op], finish: Callable[[TxnResult, int], Any]) -> Handle:
        limit = MAX_TXN_OPS - (1 if self.fence else 0)
        if len(ops) > limit:
            raise RepoError(f"{what}: {len(ops)} ops do not fit one transaction (limit {limit}); "
                            "write it outside the batch")
        handle = Handle(what, ops, finish)
        self.handles.append(handle)
        return handle

    # ---- decisions -------------------------------------------------------------------------------
    def transition(self, old: Versioned[TaskInstance], new: TaskInstance) -> Handle:
        """A fenced-by-try CAS of one TI (see TaskInstanceRepository.transition_ops).

        A TI read from a compacted run (``index == 0``) has its run unpacked now; if it changed
        meanwhile the handle is returned already failed with Conflict.
        """
        if old.index <= 0:
            tis = self.repos.task_instances
            key = TIKey(old.record.dag_id, old.record.run_id, old.record.task_id, old.record.map_index)
            tis.unpack(key, fence=self.fence)
            fresh = tis.require(key)
            if fresh.record != old.record:
                failed = Handle(f"task {new.task_id!r} of run {new.run_id!r}", [], lambda res, at: None)
                failed.error, failed.done = Conflict(f"{failed.what}: changed while unpacking its run"), True
                self.handles.append(failed)
                return failed
            old = fresh
        ops = self.repos.task_instances.transition_ops(old, new)
        return self._add(f"task {new.task_id!r} of run {new.run_id!r}", ops,
                         lambda res, at: Versioned(new, res.results[at].modify_index, old.create_index))

    def update_run(self, old: Versioned[DagRun], new: DagRun) -> Handle:
        ops = self.repos.runs.update_ops(old, new)

        def finish(res: TxnResult, at: int) -> Versioned[DagRun]:
            v = Versioned(new, res.results[at].modify_index, old.create_index)
            self.repos.runs._observe(v)
            self.repos.runs.after_update(old, v, fence=self.fence)
            return v

        return self._add(f"run {new.run_id!r} of DAG {new.dag_id!r}", ops, finish)

    def create_run(self, run: DagRun, tis: Sequence[TaskInstance]) -> Handle:
        """Create-only run + TIs in one group (DAGs of up to ~60 tasks; bigger: RunRepository.create)."""
        ops = self.repos.runs.create_ops(run, tis)

        def finish(res: TxnResult, at: int) -> Versioned[DagRun]:
            v = Versioned(run, res.results[at].modify_index, res.results[at].create_index)
            self.repos.runs._observe(v)
            return v

        return self._add(f"create run {run.run_id!r} of DAG {run.dag_id!r}", ops, finish)

    def add_ops(self, what: str, ops: list[Op]) -> Handle:
        """Any other atomic group (e.g. the agents executor's queue entries) sharing the fence."""
        return self._add(what, ops, lambda res, at: None)

    # ---- commit ----------------------------------------------------------------------------------
    def _pack(self, pending: list[Handle]) -> list[list[Handle]]:
        head = 1 if self.fence else 0
        txns: list[list[Handle]] = []
        cur: list[Handle] = []
        n = head
        size = 0
        for h in pending:
            hs = _size(h.ops)
            if cur and (n + len(h.ops) > MAX_TXN_OPS or size + hs > MAX_TXN_BYTES):
                txns.append(cur)
                cur, n, size = [], head, 0
            cur.append(h)
            n += len(h.ops)
            size += hs
        if cur:
            txns.append(cur)
        return txns

    def commit(self) -> BatchResult:
        """Send every pending decision; returns per-decision outcomes. Raises Fenced if deposed."""
        out = BatchResult(self.handles)
        pending = [h for h in self.handles if not h.done]
        for group in self._pack(pending):
            self._commit_txn(group, out)
        out.conflicts = [h for h in self.handles if h.error is not None]
        return out

    def _commit_txn(self, group: list[Handle], out: BatchResult) -> None:
        live = list(group)
        while live:
            ops: list[Op] = self.fence.wrap([]) if self.fence else []
            owner: list[Handle] = [None] * len(ops)  # type: ignore[list-item]
            for h in live:
                ops.extend(h.ops)
                owner.extend([h] * len(h.ops))
            res = self.store.txn(ops)
            out.txns += 1
            out.ops += len(ops)
            if res.ok:
                at = 0
                for h in live:
                    h.result = h.finish(res, at)
                    h.done = True
                    at += sum(1 for op in h.ops if _returns_entry(op))
                return
            losers: set[int] = set()
            for err in res.errors:
                if 0 <= err.op_index < len(ops) and isinstance(ops[err.op_index], CheckSession):
                    raise Fenced(f"write batch: leader fence failed ({err.what}); nothing more is written")
                if 0 <= err.op_index < len(owner) and owner[err.op_index] is not None:
                    losers.add(id(owner[err.op_index]))
            if not losers:  # an error we cannot attribute: fail the whole group rather than loop
                for h in live:
                    h.error, h.done = Conflict(f"{h.what}: transaction rejected ({res.errors})"), True
                return
            for h in live:
                if id(h) in losers:
                    h.error = Conflict(f"{h.what}: compare-and-set lost; re-read and decide again")
                    h.done = True
            live = [h for h in live if id(h) not in losers]
