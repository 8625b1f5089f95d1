"""Task instances and their tries: compare-and-set transitions fenced by ``try_number``.

Layout (see ``Keyspace``): one key per current TI under ``ti/<dag>/<run>/<task>/<map>``, one key per
earlier try under ``.../<map>/<try>``, and, once the run is finished and compacted, one
``ti/<dag>/<run>/packed`` value holding all of them. Every read of a run's TIs is ONE prefix list of
``ti/<dag>/<run>/`` that returns live keys and the packed value together; live keys win over
packed ones, so any interleaving of compaction, unpacking and transitions reads consistently.

Fencing rules every write obeys:

* a transition is a CAS on the TI key's ``modify_index`` (plus, for the scheduler, the leader
  check-session first in the same txn): two writers racing on one TI never both succeed;
* ``try_number`` never goes backwards, and ``report()`` (executor/agent results) refuses a write
  for any try but the current one (``StaleTry``), so a late report of try 1 cannot overwrite try 2;
* when the try number advances, the superseded try is copied to history in the same txn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from leoflow.domain.records import TaskInstance
from leoflow.domain.states import FINISHED_TI_STATES, TaskInstanceState
from leoflow.store.port import MAX_TXN_OPS, Cas, CheckIndex, DeleteCas, Entry, Op, Set, Store
from leoflow.store.repos import codec
from leoflow.store.repos.base import Fence, Keyspace, TIKey, Versioned, run_txn, with_fence
from leoflow.store.repos.errors import AlreadyExists, Conflict, NotFound, StaleTry

_PACKED = "packed"


def ti_key_of(ti: TaskInstance) -> TIKey:
    return TIKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


@dataclass(frozen=True)
class RunSnapshot:
    """Everything stored about the task instances of one run, from one prefix list.

    ``current``: one versioned TI per (task_id, map_index), sorted by task then map index.
    ``history``: earlier tries per (task_id, map_index), ascending try number.
    ``packed_index``: modify index of the packed value (0 if the run is not compacted).
    """

    dag_id: str
    run_id: str
    current: list[Versioned[TaskInstance]]
    history: dict[tuple[str, int], list[TaskInstance]]
    packed_index: int = 0
    live_keys: int = 0

    def tries(self, task_id: str, map_index: int = -1) -> list[TaskInstance]:
        """All tries of one TI, oldest first, the current one last (Airflow's ``/tries``)."""
        out = list(self.history.get((task_id, map_index), []))
        for v in self.current:
            if v.record.task_id == task_id and v.record.map_index == map_index:
                if v.record.try_number >= 1 and all(t.try_number != v.record.try_number for t in out):
                    out.append(v.record)
                break
        return out

    def get(self, task_id: str, map_index: int = -1) -> Versioned[TaskInstance] | None:
        for v in self.current:
            if v.record.task_id == task_id and v.record.map_index == map_index:
                return v
        return None


def _strip(ti: TaskInstance) -> dict[str, Any]:
    data = codec.to_dict(ti)
    data.pop("dag_id", None)
    data.pop("run_id", None)
    return data


def as_history(ti: TaskInstance) -> TaskInstance:
    """A superseded try as Airflow records it in history: a try that never finished (it went to
    ``up_for_retry``, or was still queued/running) is shown as ``failed``, keeping its end date."""
    if ti.state is None or ti.state in FINISHED_TI_STATES:
        return ti
    return replace(ti, state=TaskInstanceState.FAILED)


def pack_value(dag_id: str, run_id: str, current: Iterable[TaskInstance], history: Iterable[TaskInstance]) -> bytes:
    """The packed (compacted) form of a finished run: run ids once, TIs without them."""
    return codec.encode_json({
        "dag_id": dag_id,
        "run_id": run_id,
        "tis": [_strip(t) for t in current],
        "tries": [_strip(t) for t in history],
    })


def _unpack_records(key: str, value: bytes) -> tuple[list[TaskInstance], list[TaskInstance]]:
    data = codec.load(key, value)
    base = {"dag_id": data.get("dag_id"), "run_id": data.get("run_id")}
    cur = [codec.decode(TaskInstance, key, {**base, **t}) for t in data.get("tis", [])]
    hist = [codec.decode(TaskInstance, key, {**base, **t}) for t in data.get("tries", [])]
    return cur, hist


# What one entry of a run's prefix decodes to, remembered with the entry's modify_index: a live TI
# key -> its Versioned TI (current) or TI (a history try); the packed key -> (current, history).
Decoded = dict[str, tuple[int, Any]]


def snapshot_from_entries(
    dag_id: str, run_id: str, prefix: str, entries: Sequence[Entry], decoded: Decoded | None = None,
    previous: Decoded | None = None,
) -> RunSnapshot:
    """Assemble a run's snapshot from its prefix listing.

    ``previous`` (what an earlier listing decoded, by key) lets an entry whose ``modify_index`` is
    unchanged skip decoding; ``decoded`` is filled with what this listing decoded, for the next.
    """
    current: dict[tuple[str, int], Versioned[TaskInstance]] = {}
    history: dict[tuple[str, int, int], TaskInstance] = {}
    live_current: dict[tuple[str, int], Versioned[TaskInstance]] = {}
    live_history: dict[tuple[str, int, int], TaskInstance] = {}
    packed_index = 0
    live = 0
    before = previous or {}
    for e in entries:
        hit = before.get(e.key)
        cached = hit[1] if hit is not None and hit[0] == e.modify_index else None
        rest = e.key[len(prefix):].split("/")
        if len(rest) == 1 and rest[0] == _PACKED:
            packed_index = e.modify_index
            if cached is None:
                cur, hist = _unpack_records(e.key, e.value)
                cached = ([Versioned(t, 0, e.create_index) for t in cur], hist)
            for v in cached[0]:
                current[(v.record.task_id, v.record.map_index)] = v
            for t in cached[1]:
                history[(t.task_id, t.map_index, t.try_number)] = t
        elif len(rest) == 2:
            live += 1
            if cached is None:
                cached = Versioned(codec.decode(TaskInstance, e.key, e.value), e.modify_index, e.create_index)
            live_current[(cached.record.task_id, cached.record.map_index)] = cached
        elif len(rest) == 3:
            live += 1
            if cached is None:
                cached = codec.decode(TaskInstance, e.key, e.value)
            live_history[(cached.task_id, cached.map_index, cached.try_number)] = cached
        else:
            continue
        if decoded is not None:
            decoded[e.key] = (e.modify_index, cached)
    current.update(live_current)
    history.update(live_history)
    hist_out: dict[tuple[str, int], list[TaskInstance]] = {}
    for (task, mi, _n), t in sorted(history.items()):
        hist_out.setdefault((task, mi), []).append(t)
    ordered = [current[k] for k in sorted(current)]
    return RunSnapshot(dag_id, run_id, ordered, hist_out, packed_index, live)


class SnapshotCache:
    """Decoded snapshots of recently read runs, keyed by their prefix listing's (key, modify_index)s.

    Why: the DAG page polls every TI of every run in a day's window (24 runs, 1,200 TIs) every few
    seconds, and decoding them was ~90 % of that call. The store is still listed on every read (so
    this process's writes and other processes' writes are seen exactly as before); only decoding
    is skipped. A finished, compacted run is one ``packed`` entry whose ``modify_index`` changes on
    any rewrite, so its whole snapshot is reused until then; a live run re-decodes only the TI keys
    whose ``modify_index`` moved. Bounded LRU (``max_runs``); snapshots are shared: do not mutate.
    """

    def __init__(self, max_runs: int = 256, max_settled: int = 1024) -> None:
        self.max_runs = max_runs
        self.max_settled = max_settled
        self._runs: OrderedDict[str, tuple[tuple[tuple[str, int], ...], RunSnapshot, Decoded]] = OrderedDict()
        # prefix -> (the run record's modify_index when read, a packed-only snapshot): see ``settled``
        self._settled: OrderedDict[str, tuple[int, RunSnapshot]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def settled(self, prefix: str, run_index: int) -> RunSnapshot | None:
        """A compacted run's snapshot read while its run record was at ``run_index``, if it still is.

        Sound because a compacted run's TIs only change after ``unpack``, which rewrites the run
        record in the same txn that removes the packed value (ADR 0066): a changed run index is
        the signal, and the run projection carries it without a store request.
        """
        with self._lock:
            hit = self._settled.get(prefix)
            if hit is None or hit[0] != run_index:
                return None
            self._settled.move_to_end(prefix)
        self.hits += 1
        return hit[1]

    def settle(self, prefix: str, run_index: int, snap: RunSnapshot) -> None:
        if self.max_settled <= 0 or not snap.packed_index or snap.live_keys:
            return  # only a packed-only listing is immutable until the run record changes
        with self._lock:
            self._settled[prefix] = (run_index, snap)
            self._settled.move_to_end(prefix)
            while len(self._settled) > self.max_settled:
                self._settled.popitem(last=False)

    def forget(self, prefix: str) -> None:
        """This process changed the run's TIs: never answer from the settled copy again."""
        with self._lock:
            self._settled.pop(prefix, None)

    def snapshot(self, dag_id: str, run_id: str, prefix: str, entries: Sequence[Entry]) -> RunSnapshot:
        signature = tuple((e.key, e.modify_index) for e in entries)
        with self._lock:
            cached = self._runs.get(prefix)
            if cached is not None:
                self._runs.move_to_end(prefix)
        if cached is not None and cached[0] == signature:
            self.hits += 1
            return cached[1]
        self.misses += 1
        decoded: Decoded = {}
        snap = snapshot_from_entries(dag_id, run_id, prefix, entries, decoded, cached[2] if cached else None)
        if self.max_runs > 0:
            with self._lock:
                self._runs[prefix] = (signature, snap, decoded)
                self._runs.move_to_end(prefix)
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
        return snap

    def __len__(self) -> int:
        return len(self._runs)


class TaskInstanceRepository:
    """Task instances of runs. Reads of a run cost ONE store request; writes are single txns."""

    def __init__(self, store: Store, keyspace: Keyspace, *, cache_runs: int = 256) -> None:
        self.store = store
        self.ks = keyspace
        self.cache = SnapshotCache(cache_runs)
        self._prefixes: dict[tuple[str, str], str] = {}

    def run_prefix(self, dag_id: str, run_id: str) -> str:
        """``ti/<dag>/<run>/``, memoized: encoding ids byte by byte was a tenth of a window's listing."""
        prefix = self._prefixes.get((dag_id, run_id))
        if prefix is None:
            prefix = self.ks.ti_run_prefix(dag_id, run_id)
            if len(self._prefixes) >= 8192:
                self._prefixes.clear()
            self._prefixes[(dag_id, run_id)] = prefix
        return prefix

    # ---- reads -------------------------------------------------------------------------------
    def snapshot(self, dag_id: str, run_id: str, *, settled_at: int | None = None) -> RunSnapshot:
        """Current TIs and try history of one run: one prefix list, compacted or not.

        Entries unchanged since an earlier read are not decoded again (``SnapshotCache``); the
        returned snapshot may be shared with other readers and must not be mutated.
        ``settled_at``: the modify_index of the run record, for a read-only answer about a
        finished run (from the run projection); a compacted run read at that index is then
        answered from memory, with no store request, until the run record changes.
        """
        prefix = self.run_prefix(dag_id, run_id)
        if settled_at:
            hit = self.cache.settled(prefix, settled_at)
            if hit is not None:
                return hit
        snap = self.cache.snapshot(dag_id, run_id, prefix, self.store.list(prefix))
        if settled_at:
            self.cache.settle(prefix, settled_at, snap)
        return snap

    def list_for_run(self, dag_id: str, run_id: str, *, settled_at: int | None = None) -> list[Versioned[TaskInstance]]:
        """Every current TI of a run, sorted by (task_id, map_index); [] if the run has none."""
        return self.snapshot(dag_id, run_id, settled_at=settled_at).current

    def get(self, key: TIKey) -> Versioned[TaskInstance] | None:
        """One TI: a single get of its key; falls back to the run's packed value when compacted."""
        entry = self.store.get(self.ks.ti(key))
        if entry is not None:
            return Versioned(codec.decode(TaskInstance, entry.key, entry.value), entry.modify_index, entry.create_index)
        packed = self.store.get(self.ks.packed(key.dag_id, key.run_id))
        if packed is None:
            return None
        cur, _ = _unpack_records(packed.key, packed.value)
        for t in cur:
            if t.task_id == key.task_id and t.map_index == key.map_index:
                return Versioned(t, 0, packed.create_index)
        return None

    def require(self, key: TIKey) -> Versioned[TaskInstance]:
        found = self.get(key)
        if found is None:
            raise NotFound(f"task instance {key.task_id!r} (map_index {key.map_index}) of run {key.run_id!r} "
                           f"of DAG {key.dag_id!r} does not exist")
        return found

    def tries(self, key: TIKey) -> list[TaskInstance]:
        """All tries of one TI, oldest first, the current try last: one store request."""
        return self.snapshot(key.dag_id, key.run_id).tries(key.task_id, key.map_index)

    def list_for_runs(self, runs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], RunSnapshot]:
        """Snapshots of several runs: one request per run (used by pools and the dashboard)."""
        return {(d, r): self.snapshot(d, r) for d, r in runs}

    # ---- writes ------------------------------------------------------------------------------
    def create_ops(self, tis: Iterable[TaskInstance]) -> list[Op]:
        """Create-only ops for new TIs (the run-creation txn and mapped-task expansion use these)."""
        return [Cas(self.ks.ti(ti_key_of(t)), codec.encode(t), 0) for t in tis]

    def create_many(self, tis: Sequence[TaskInstance], *, fence: Fence | None = None) -> list[Versioned[TaskInstance]]:
        """Create new TIs (e.g. mapped expansions), create-only, in txns of at most 64 ops.

        Each chunk is atomic; if one TI already exists the chunk fails with AlreadyExists and later
        chunks are not sent.
        """
        out: list[Versioned[TaskInstance]] = []
        step = MAX_TXN_OPS - (1 if fence else 0)
        for i in range(0, len(tis), step):
            chunk = tis[i : i + step]
            try:
                res = run_txn(self.store, with_fence(fence, self.create_ops(chunk)), what="create task instances")
            except Conflict as exc:
                raise AlreadyExists(f"a task instance of {[t.task_id for t in chunk]} already exists: {exc}") from exc
            out.extend(Versioned(t, e.modify_index, e.create_index) for t, e in zip(chunk, res.results, strict=True))
        return out

    def archive_ops(self, tries: Iterable[TaskInstance]) -> list[Op]:
        """Ops that put finished tries into history (a clear archives try N before resetting the TI)."""
        return [Set(self.ks.ti_try(ti_key_of(t), t.try_number), codec.encode(t)) for t in tries]

    def transition_ops(self, old: Versioned[TaskInstance], new: TaskInstance) -> list[Op]:
        """The ops of one fenced-by-try transition (without the leader fence); used by WriteBatch.

        Raises StaleTry if ``new`` would move the try number backwards, ValueError if ``new`` is
        another TI. ``old`` must be live (``index > 0``); packed TIs go through ``transition``.
        """
        o = old.record
        if ti_key_of(o) != ti_key_of(new):
            raise ValueError(f"transition: {ti_key_of(new)} is not the task instance {ti_key_of(o)}")
        if new.try_number < o.try_number:
            raise StaleTry(f"task instance {o.task_id!r} of run {o.run_id!r} is at try {o.try_number}; "
                           f"refusing a write for try {new.try_number}")
        if old.index <= 0:
            raise Conflict(f"task instance {o.task_id!r} of run {o.run_id!r} is compacted; use transition()")
        key = ti_key_of(o)
        ops: list[Op] = [Cas(self.ks.ti(key), codec.encode(new), old.index)]
        if new.try_number > o.try_number and o.try_number >= 1 and o.state is not None:
            # A cleared TI (state None) was archived by the clear itself; never overwrite that.
            ops.append(Set(self.ks.ti_try(key, o.try_number), codec.encode(as_history(o))))
        return ops

    def transition(
        self, old: Versioned[TaskInstance], new: TaskInstance, *, fence: Fence | None = None
    ) -> Versioned[TaskInstance]:
        """Compare-and-set ``old`` -> ``new`` in one txn; Conflict if the TI changed since ``old`` was read.

        When the try number advances the old try goes to history atomically. A TI of a compacted
        run is unpacked first (its run's TIs become live keys again), then CAS'ed.
        """
        if old.index <= 0:
            self.unpack(o_key := ti_key_of(old.record), fence=fence)
            fresh = self.require(o_key)
            if fresh.record != old.record:
                raise Conflict(f"task instance {o_key.task_id!r} of run {o_key.run_id!r} changed while unpacking")
            old = fresh
        ops = with_fence(fence, self.transition_ops(old, new))
        res = run_txn(self.store, ops, what=f"task instance {new.task_id!r} of run {new.run_id!r}")
        entry = res.results[0]
        return Versioned(new, entry.modify_index, old.create_index)

    def report(
        self,
        key: TIKey,
        try_number: int,
        change: Callable[[TaskInstance], TaskInstance | None],
        *,
        attempts: int = 5,
    ) -> Versioned[TaskInstance]:
        """Apply an executor/agent report for ``try_number``, fenced by it, retrying lost CAS races.

        ``change`` gets the current TI and returns the new one (or None: nothing to write). It is
        called again after a lost race, on the fresh record. Raises StaleTry when the TI's current
        try is not ``try_number`` (a late report of an older try, or of a try not started yet), and
        NotFound when there is no such TI. Costs 2 requests (get + txn) when uncontended.
        """
        for _ in range(attempts):
            cur = self.require(key)
            if cur.record.try_number != try_number:
                raise StaleTry(f"report for try {try_number} of task {key.task_id!r} in run {key.run_id!r} refused: "
                               f"the current try is {cur.record.try_number}")
            new = change(cur.record)
            if new is None:
                return cur
            if new.try_number != try_number:
                raise ValueError("report: change() must not alter try_number")
            try:
                return self.transition(cur, new)
            except StaleTry:
                raise
            except Conflict:
                continue
        raise Conflict(f"task instance {key.task_id!r} of run {key.run_id!r}: lost {attempts} races in a row")

    # ---- compaction ------------------------------------------------------------------------------
    def unpack(self, key: TIKey, *, fence: Fence | None = None, touch_run: bool = True) -> bool:
        """Turn the compacted run of ``key`` (only dag_id and run_id matter) back into live keys
        (for a clear or mark on a finished run).

        Create-only writes, each chunk guarded by the packed value's index, the packed value
        deleted last: readers see the same TIs throughout. Returns False if nothing was packed.
        The last txn also rewrites the run record unchanged (a new write nonce, compare-and-set):
        readers that keep a compacted run's TIs while its run record is unchanged (``settled_at``)
        learn from the run's new index that they may change now. ``touch_run=False`` when the
        caller has just changed the run record itself (a finished run made active again).
        """
        prefix = self.ks.ti_run_prefix(key.dag_id, key.run_id)
        entries = self.store.list(prefix)
        packed = next((e for e in entries if e.key == prefix + _PACKED), None)
        if packed is None:
            return False
        run = self.store.get(self.ks.run(key.dag_id, key.run_id)) if touch_run else None
        live = {e.key for e in entries}
        cur, hist = _unpack_records(packed.key, packed.value)
        ops: list[Op] = []
        for t in cur:
            k = self.ks.ti(ti_key_of(t))
            if k not in live:
                ops.append(Cas(k, codec.encode(t), 0))
        for t in hist:
            k = self.ks.ti_try(ti_key_of(t), t.try_number)
            if k not in live:
                ops.append(Cas(k, codec.encode(t), 0))
        guard: list[Op] = [CheckIndex(packed.key, packed.modify_index)]
        step = MAX_TXN_OPS - len(guard) - (1 if fence else 0)
        chunks = [ops[i : i + step] for i in range(0, len(ops), step)] or [[]]
        final: list[Op] = [DeleteCas(packed.key, packed.modify_index)]
        if run is not None:
            final.append(Cas(run.key, codec.encode_json(codec.load(run.key, run.value)), run.modify_index))
        last = chunks[-1]
        if len(last) + len(final) <= step:
            last.extend(final)
            tail: list[Op] = []
        else:
            tail = final
        for chunk in chunks:
            run_txn(self.store, with_fence(fence, [*guard, *chunk]), what=f"unpack run {key.run_id!r}")
        if tail:
            run_txn(self.store, with_fence(fence, tail), what=f"unpack run {key.run_id!r}")
        self.cache.forget(prefix)
        return True

