"""An in-process read projection of every run record, kept fresh by the port's blocking watch.

Why: the UI's relational reads (DAG list with latest runs, runs across DAGs newest first with
``total_entries``, dagStats, calendar) would otherwise each scan ``runs/`` (10,000 records at the
target scale, tens of milliseconds to fetch and decode) and cost one store request per DAG on
Consul. The API server instead holds every run record in memory (about 1 KiB each) and answers
those reads with no store request at all.

How it stays fresh: one thread per process runs a blocking query on ``<root>/runs/`` (recurse),
``wait`` seconds at a time (default 0.5 s so ``stop()`` is prompt; a Consul deployment may pass a
longer wait to ``Repositories.open(projection_wait=...)`` to save idle requests).
Each return carries the whole prefix (Consul's semantics); entries whose ``modify_index`` is
unchanged reuse the decoded record, so a refresh decodes only what changed. Wake-ups are
rate-limited (``min_interval``) as HashiCorp advises for hot prefixes; an index that goes
backwards resets the watch (Consul's blocking-query rules). Run records change only on run
transitions (a handful per run), never on task transitions, so the watched prefix is cool.

Read-your-writes: a write through ``RunRepository`` in this process is applied at once
(``observe``); a listing older than a local write never reverts it. Other processes' writes are
visible after at most one watch round-trip plus ``min_interval``; ``wait_for(index)`` blocks
(bounded) until the projection has caught up with a given store index.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from datetime import datetime

from leoflow.domain.records import DagRun
from leoflow.store.port import Entry, Store, StoreError
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Keyspace, Versioned
from leoflow.store.repos.follower import PrefixFollower

log = logging.getLogger(__name__)


class RunProjection(PrefixFollower):
    def __init__(self, store: Store, keyspace: Keyspace, *, min_interval: float = 0.05, wait: float = 0.5) -> None:
        super().__init__(store, keyspace.runs_prefix(), name="run projection", wait=wait, min_interval=min_interval)
        self.ks = keyspace
        self._by_key: dict[str, Versioned[DagRun]] = {}
        self._by_dag: dict[str, dict[str, Versioned[DagRun]]] = {}
        self._sorted: dict[str, tuple[int, list[Versioned[DagRun]]]] = {}  # keyed by ``generation``
        # Per DAG: its runs sorted by (run_after, create_index) and their run_afters, for bisecting.
        self._by_run_after: dict[str, tuple[int, list[Versioned[DagRun]], list[datetime]]] = {}
        self._by_state: tuple[int, dict[str, list[Versioned[DagRun]]]] = (-1, {})

    def _apply(self, index: int, entries: Iterable[Entry]) -> None:
        old = self._by_key
        fresh: dict[str, Versioned[DagRun]] = {}
        for e in entries:
            key = e.key
            prev = old.get(key)
            if prev is not None and prev.index == e.modify_index:
                fresh[key] = prev
                continue
            try:
                record = codec.decode(DagRun, key, e.value)
            except StoreError as exc:
                log.error("run projection: skipping undecodable run", extra={"key": key, "error": str(exc)})
                continue
            fresh[key] = Versioned(record, e.modify_index, e.create_index)
        with self._lock:
            if index < self._index:
                log.info("run projection: store index went backwards; reloading", extra={"index": index})
            self._keep_local_writes(fresh, index, lambda _at, local: local)
            current = self._by_key
            changed = len(fresh) != len(current) or any(current.get(k) is not v for k, v in fresh.items())
            if changed:
                by_dag: dict[str, dict[str, Versioned[DagRun]]] = {}
                for key, v in fresh.items():
                    by_dag.setdefault(v.record.dag_id, {})[key] = v
                self._by_key, self._by_dag = fresh, by_dag
                self._generation += 1
            self._round_done(index)

    # ---- local writes ----------------------------------------------------------------------------
    def observe(self, key: str, run: Versioned[DagRun]) -> None:
        """Apply a write this process just made, so its own next read sees it."""
        with self._lock:
            current = self._by_key.get(key)
            if current is not None and current.index >= run.index:
                return
            self._local[key] = (run.index, run)
            by_key = dict(self._by_key)
            by_key[key] = run
            dag = dict(self._by_dag.get(run.record.dag_id, {}))
            dag[key] = run
            self._by_key = by_key
            self._by_dag = {**self._by_dag, run.record.dag_id: dag}
            self._generation += 1

    def observe_deleted(self, key: str, index: int | None = None) -> None:
        with self._lock:
            current = self._by_key.get(key)
            if current is None:
                return
            at = index if index is not None else max(self._index, current.index) + 1
            self._local[key] = (at, None)
            by_key = dict(self._by_key)
            by_key.pop(key, None)
            dag = dict(self._by_dag.get(current.record.dag_id, {}))
            dag.pop(key, None)
            self._by_key = by_key
            self._by_dag = {**self._by_dag, current.record.dag_id: dag}
            self._generation += 1

    # ---- reads -----------------------------------------------------------------------------------
    def runs(self, dag_ids: Iterable[str] | None = None) -> list[Versioned[DagRun]]:
        if dag_ids is None:
            return list(self._by_key.values())
        by_dag = self._by_dag
        out: list[Versioned[DagRun]] = []
        for dag in dict.fromkeys(dag_ids):
            out.extend(by_dag.get(dag, {}).values())
        return out

    def sorted_runs(self, order_by: str) -> list[Versioned[DagRun]]:
        """Every run sorted by ``order_by``, cached until the next change (do not mutate the list).

        Listing all DAGs' runs newest first is then a slice, not a sort of 10,000 records.
        """
        generation = self._generation  # read before the data: a racing change only makes the tag older
        cached = self._sorted.get(order_by)
        if cached is not None and cached[0] == generation:
            return cached[1]
        ordered = query.sort_runs(list(self._by_key.values()), order_by)
        self._sorted[order_by] = (generation, ordered)
        return ordered

    def in_states(self, states: Iterable[str]) -> list[Versioned[DagRun]]:
        """The runs in any of ``states``, from a per-state index built once per generation: every
        UI screen polls "is anything queued or running?", which would otherwise scan every run."""
        generation = self._generation  # read before the data: a racing change only makes the tag older
        tagged, index = self._by_state
        if tagged != generation:
            index = {}
            for v in self._by_key.values():
                index.setdefault(str(v.record.state), []).append(v)
            self._by_state = (generation, index)
        return [v for state in dict.fromkeys(str(s) for s in states) for v in index.get(state, ())]

    def get(self, key: str) -> Versioned[DagRun] | None:
        """One run as the projection holds it (no store request; not for CAS: use the store)."""
        return self._by_key.get(key)

    def window(
        self,
        dag_id: str,
        *,
        gte: datetime | None = None,
        gt: datetime | None = None,
        lte: datetime | None = None,
        lt: datetime | None = None,
    ) -> list[Versioned[DagRun]]:
        """The runs of one DAG whose ``run_after`` lies in the given bounds, oldest first (ties:
        creation order), by bisecting a per-DAG list sorted on ``run_after`` (cached until the
        next change) instead of scanning and comparing every run. Bounds are Airflow's: ``_gte``
        and ``_lte`` inclusive, ``_gt`` and ``_lt`` exclusive; none given: every run of the DAG.
        """
        generation = self._generation  # read before the data: a racing change only makes the tag older
        cached = self._by_run_after.get(dag_id)
        if cached is None or cached[0] != generation:
            ordered = sorted(self._by_dag.get(dag_id, {}).values(), key=lambda v: (v.record.run_after, v.create_index))
            cached = (generation, ordered, [v.record.run_after for v in ordered])
            self._by_run_after[dag_id] = cached
        _, ordered, keys = cached
        lo, hi = 0, len(keys)
        if gte is not None:
            lo = max(lo, bisect.bisect_left(keys, gte))
        if gt is not None:
            lo = max(lo, bisect.bisect_right(keys, gt))
        if lte is not None:
            hi = min(hi, bisect.bisect_right(keys, lte))
        if lt is not None:
            hi = min(hi, bisect.bisect_left(keys, lt))
        return ordered[lo:hi] if lo < hi else []

    def dag_ids(self) -> list[str]:
        return sorted(d for d, runs in self._by_dag.items() if runs)

    def __len__(self) -> int:
        return len(self._by_key)
