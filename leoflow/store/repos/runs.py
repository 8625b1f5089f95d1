"""DAG runs: create-only creation together with their task instances, CAS updates, listing.

A run is one key (``runs/<dag>/<run>``). While it is queued or running a marker copy of the same
bytes sits at ``active/<dag>/<run>``, written in the same txn, so the scheduler reads (or
watches) exactly the active runs with one request, and the marker's ``modify_index`` equals the
run's (one txn, one index). Listing reads come from the in-process ``RunProjection`` when one is
attached (the API server), otherwise from a prefix scan (CLI, scheduler start-up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState
from leoflow.store.port import MAX_TXN_OPS, Cas, CheckIndex, CheckNotExists, Delete, DeleteCas, Entry, Op, Set, Store
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Fence, Keyspace, Page, TIKey, Versioned, run_txn, with_fence
from leoflow.store.repos.errors import AlreadyExists, Conflict, NotFound
from leoflow.store.repos.projection import RunProjection
from leoflow.store.repos.query import CalendarBucket, RunQuery
from leoflow.store.repos.task_instances import TaskInstanceRepository, pack_value, snapshot_from_entries

ACTIVE_RUN_STATES = frozenset({DagRunState.QUEUED, DagRunState.RUNNING})
# A packed run above this size stays uncompacted (live keys): it must fit one value and one txn.
MAX_PACKED_BYTES = 256 * 1024


def _has_run_after_bounds(q: RunQuery) -> bool:
    return any(b is not None for b in (q.run_after_gte, q.run_after_gt, q.run_after_lte, q.run_after_lt))


def decode_run(entry: Entry) -> Versioned[DagRun]:
    return Versioned(codec.decode(DagRun, entry.key, entry.value), entry.modify_index, entry.create_index)


class RunRepository:
    def __init__(
        self, store: Store, keyspace: Keyspace, tis: TaskInstanceRepository, projection: RunProjection | None = None
    ) -> None:
        self.store = store
        self.ks = keyspace
        self.tis = tis
        self.projection = projection

    # ---- writes ------------------------------------------------------------------------------
    def _run_ops(self, run: DagRun, index: int, was_active: bool) -> list[Op]:
        """CAS of the run key plus the active-marker write or delete that keeps it in step."""
        value = codec.encode(run)
        key = self.ks.run(run.dag_id, run.run_id)
        ops: list[Op] = [Cas(key, value, index)]
        marker = self.ks.active(run.dag_id, run.run_id)
        if run.state in ACTIVE_RUN_STATES:
            ops.append(Set(marker, value))
        elif was_active:
            ops.append(Delete(marker))
        return ops

    def create_ops(self, run: DagRun, tis: Sequence[TaskInstance]) -> list[Op]:
        """Ops that create ``run`` and its TIs in one txn (WriteBatch uses them); needs <= 64 ops."""
        for t in tis:
            if (t.dag_id, t.run_id) != (run.dag_id, run.run_id):
                raise ValueError(f"task instance {t.task_id!r} belongs to run {t.run_id!r} of {t.dag_id!r}, "
                                 f"not to run {run.run_id!r} of {run.dag_id!r}")
        return [*self._run_ops(run, 0, False), *self.tis.create_ops(tis)]

    def create(
        self, run: DagRun, tis: Sequence[TaskInstance] = (), *, fence: Fence | None = None
    ) -> Versioned[DagRun]:
        """Create a run and its task instances atomically; AlreadyExists if the run id is taken.

        Up to 62 TIs (61 with a fence) it is one txn. Bigger DAGs: the TIs go first in chunks that
        each check the run does not exist yet, the run key is created last (create-only), so no
        reader ever sees a run without its TIs and a crashed attempt can simply be retried (the
        leftover TIs are overwritten; ``db clean`` removes them if never retried).
        """
        ops = self.create_ops(run, tis)
        what = f"create run {run.run_id!r} of DAG {run.dag_id!r}"
        try:
            if len(ops) + (1 if fence else 0) <= MAX_TXN_OPS:
                res = run_txn(self.store, with_fence(fence, ops), what=what)
            else:
                run_key = self.ks.run(run.dag_id, run.run_id)
                ti_ops = [Set(op.key, op.value) for op in self.tis.create_ops(tis)]
                step = MAX_TXN_OPS - 1 - (1 if fence else 0)
                heads: list[Op] = []
                for i in range(0, len(ti_ops), step):
                    chunk = run_txn(self.store, with_fence(fence, [CheckNotExists(run_key), *ti_ops[i : i + step]]),
                                    what=what)
                    heads.append(CheckIndex(ti_ops[i].key, chunk.results[0].modify_index))
                # The run appears only if every chunk is still there (db clean may remove orphans).
                res = run_txn(self.store, with_fence(fence, [*heads, *self._run_ops(run, 0, False)]), what=what)
        except Conflict as exc:
            raise AlreadyExists(f"run {run.run_id!r} of DAG {run.dag_id!r} already exists") from exc
        created = Versioned(run, res.results[0].modify_index, res.results[0].create_index)
        self._observe(created)
        return created

    def update_ops(self, old: Versioned[DagRun], new: DagRun) -> list[Op]:
        if (old.record.dag_id, old.record.run_id) != (new.dag_id, new.run_id):
            raise ValueError(f"update: run {new.run_id!r} is not run {old.record.run_id!r}")
        return self._run_ops(new, old.index, old.record.state in ACTIVE_RUN_STATES)

    def update(self, old: Versioned[DagRun], new: DagRun, *, fence: Fence | None = None) -> Versioned[DagRun]:
        """Compare-and-set the run (state, dates, note, conf...); Conflict if it changed since read."""
        res = run_txn(self.store, with_fence(fence, self.update_ops(old, new)),
                      what=f"update run {new.run_id!r} of DAG {new.dag_id!r}")
        updated = Versioned(new, res.results[0].modify_index, old.create_index)
        self._observe(updated)
        self.after_update(old, updated, fence=fence)
        return updated

    def after_update(self, old: Versioned[DagRun], new: Versioned[DagRun], *, fence: Fence | None = None) -> None:
        """A finished run that becomes active again (a clear) gets its compacted TIs unpacked, so
        the scheduler only ever sees live TI keys of active runs."""
        if old.record.state not in ACTIVE_RUN_STATES and new.record.state in ACTIVE_RUN_STATES:
            # The run record just changed: that is the signal for readers of its compacted TIs.
            self.tis.unpack(TIKey(new.record.dag_id, new.record.run_id, ""), fence=fence, touch_run=False)

    def delete(self, dag_id: str, run_id: str, *, fence: Fence | None = None) -> bool:
        """Delete a run with its TIs, tries and XComs; False if it did not exist.

        The run key (and marker) go first in one txn, so the run disappears atomically for
        readers; the TI and XCom prefixes follow (recursive deletes). A crash between leaves
        orphans that ``db clean`` removes.
        """
        entry = self.store.get(self.ks.run(dag_id, run_id))
        if entry is None:
            return False
        res = run_txn(self.store, with_fence(fence, [DeleteCas(entry.key, entry.modify_index),
                                                     Delete(self.ks.active(dag_id, run_id))]),
                      what=f"delete run {run_id!r} of DAG {dag_id!r}")
        if self.projection is not None:
            self.projection.observe_deleted(entry.key, res.index or None)
        self.store.delete(self.ks.ti_run_prefix(dag_id, run_id), recurse=True)
        self.store.delete(self.ks.xcom_prefix(dag_id, run_id), recurse=True)
        return True

    # ---- reads -------------------------------------------------------------------------------
    def get(self, dag_id: str, run_id: str) -> Versioned[DagRun] | None:
        """One get of the run key (always from the store, so CAS callers get the current index)."""
        entry = self.store.get(self.ks.run(dag_id, run_id))
        return None if entry is None else decode_run(entry)

    def require(self, dag_id: str, run_id: str) -> Versioned[DagRun]:
        found = self.get(dag_id, run_id)
        if found is None:
            raise NotFound(f"run {run_id!r} of DAG {dag_id!r} does not exist")
        return found

    def active(self) -> list[Versioned[DagRun]]:
        """Every queued or running run, from one prefix list of the active markers (the scheduler's view)."""
        return [decode_run(e) for e in self.store.list(self.ks.active_prefix())]

    def active_prefix(self) -> str:
        """The prefix the scheduler may watch (blocking query) to learn of new and changed active runs."""
        return self.ks.active_prefix()

    def _all(self, dag_ids: Iterable[str] | None = None) -> list[Versioned[DagRun]]:
        if self.projection is not None:
            return self.projection.runs(dag_ids)
        if dag_ids is None:
            return [decode_run(e) for e in self.store.list(self.ks.runs_prefix())]
        out: list[Versioned[DagRun]] = []
        for dag in dict.fromkeys(dag_ids):
            out.extend(decode_run(e) for e in self.store.list(self.ks.runs_prefix(dag)))
        return out

    def list(self, q: RunQuery | None = None) -> Page[Versioned[DagRun]]:
        """Runs matching ``q`` ordered and paged, with ``total_entries`` (Airflow's dagRuns list).

        With a projection: no store request. Without: one prefix list per DAG named in
        ``q.dag_ids`` (or one of all runs).
        """
        q = q if q is not None else RunQuery()
        query.check_order_by(q.order_by)
        if self.projection is not None and q.dag_ids is None:
            if q.states:  # few runs are in the asked states (the "anything running?" probe): no scan
                candidates = self.projection.in_states(q.states)
                if len(candidates) * 4 < len(self.projection):
                    return query.query_runs(candidates, q)
            return query.query_sorted(self.projection.sorted_runs(q.order_by), q)
        if self.projection is not None and q.dag_ids is not None and _has_run_after_bounds(q):
            # A run_after window (the DAG page's poll): bisect each DAG's runs, filter the few left.
            window: list[Versioned[DagRun]] = []
            for dag in dict.fromkeys(q.dag_ids):
                window.extend(self.projection.window(dag, gte=q.run_after_gte, gt=q.run_after_gt,
                                                     lte=q.run_after_lte, lt=q.run_after_lt))
            return query.query_runs(window, q)
        return query.query_runs(self._all(q.dag_ids), q)

    def peek(self, dag_id: str, run_id: str) -> Versioned[DagRun] | None:
        """One run for a read-only answer: from the projection when attached (no store request;
        this process's writes included), else from the store (also when the projection has not
        seen the run yet: another process may have just created it). CAS callers must use ``get``."""
        if self.projection is not None:
            found = self.projection.get(self.ks.run(dag_id, run_id))
            if found is not None:
                return found
        return self.get(dag_id, run_id)

    def for_dag(self, dag_id: str) -> list[Versioned[DagRun]]:
        """Every run of one DAG, oldest ``run_after`` first."""
        return query.sort_runs(self._all([dag_id]), "run_after")

    def latest(self, dag_ids: Iterable[str] | None = None, n: int = 1) -> dict[str, list[Versioned[DagRun]]]:
        """The newest ``n`` runs (by run_after, ties: newest created) of each DAG; DAGs without runs
        are absent. With the projection: the tail of each DAG's run_after-sorted list, no scan."""
        if self.projection is not None:
            out: dict[str, list[Versioned[DagRun]]] = {}
            for dag in (self.projection.dag_ids() if dag_ids is None else dict.fromkeys(dag_ids)):
                newest = self.projection.window(dag)[-n:] if n > 0 else []
                if newest:
                    out[dag] = newest[::-1]
            return out
        return query.latest_per_dag(self._all(dag_ids), n)

    def counts_by_state(self, dag_ids: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """Run counts per DAG and state (``dagStats``; the dashboard sums them)."""
        return query.counts_by_state(r.record for r in self._all(dag_ids))

    def calendar(
        self,
        dag_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        granularity: Literal["daily", "hourly"] = "daily",
    ) -> list[CalendarBucket]:
        """Runs per day (or hour) and state for the calendar view."""
        return query.calendar((r.record for r in self._all([dag_id])), start=start, end=end, granularity=granularity)

    # ---- compaction ------------------------------------------------------------------------------
    def compact(self, dag_id: str, run_id: str) -> bool:
        """Fold a finished run's TI and try keys into one packed value; False if not applicable.

        Safe at any time: every live key is removed by delete-cas and the run is checked unchanged
        in the same txn, so a concurrent transition or clear makes the compaction fail (Conflict)
        and leaves everything as it was. Runs whose packed value would exceed 256 KiB stay live.
        """
        run = self.get(dag_id, run_id)
        if run is None or run.record.state in ACTIVE_RUN_STATES:
            return False
        prefix = self.ks.ti_run_prefix(dag_id, run_id)
        entries = self.store.list(prefix)
        live = [e for e in entries if e.key != prefix + "packed"]
        if not live:
            return False
        snap = snapshot_from_entries(dag_id, run_id, prefix, entries)
        history = [t for items in snap.history.values() for t in items]
        value = pack_value(dag_id, run_id, (v.record for v in snap.current), history)
        if len(value) > MAX_PACKED_BYTES:
            return False
        packed_key = self.ks.packed(dag_id, run_id)
        guard: list[Op] = [CheckIndex(self.ks.run(dag_id, run_id), run.index)]
        first: list[Op] = [*guard, Cas(packed_key, value, snap.packed_index)]
        deletes: list[Op] = [DeleteCas(e.key, e.modify_index) for e in live]
        room = MAX_TXN_OPS - len(first)
        res = run_txn(self.store, [*first, *deletes[:room]], what=f"compact run {run_id!r}")
        new_packed = res.results[0].modify_index
        rest = deletes[room:]
        step = MAX_TXN_OPS - 2
        for i in range(0, len(rest), step):
            run_txn(self.store, [*guard, CheckIndex(packed_key, new_packed), *rest[i : i + step]],
                    what=f"compact run {run_id!r}")
        return True

    # ---- projection bookkeeping ----------------------------------------------------------------
    def _observe(self, run: Versioned[DagRun]) -> None:
        if self.projection is not None:
            self.projection.observe(self.ks.run(run.record.dag_id, run.record.run_id), run)

