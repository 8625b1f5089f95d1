"""One scheduler wake-up: read the store, decide with the pure planner, write fenced, then act.

The store is the truth; nothing here survives a restart except caches that are rebuilt on
election. A wake-up has three phases, each ending in one ``WriteBatch`` of fenced
compare-and-set transactions:

1. **Facts**: executor events (fenced by try number), due scheduled runs created, queued runs
   started within ``max_active_runs``. Written first, because the plan must build on them.
2. **Decisions**: every running run is planned on its own (an exception in one run is counted
   and logged, the others go on), then ``choose_queued`` picks what may start across runs
   (pools, ``max_active_tasks``, ``parallelism``, priority). Chosen tries are rendered now.
3. **Actions**, only for decisions whose write landed: cancels, then submits. A try is handed to
   the executor only after its ``queued`` state is durable, and ``submit`` is idempotent per try,
   so a crash anywhere is repaired on the next election by resubmitting queued tries
   (``recover``) without ever running one twice. A failed submit is retried with backoff and never
   spends a try, unless the failure is permanent (the executor can never store this request):
   then, like a queued try that can no longer be rendered, the try fails with the reason, through
   the same path as an executor's report.

Lost compare-and-sets (someone else wrote the same record) drop only that run's decisions; the
competing write also moves a watched index, so the run is re-planned at once on fresh data.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.domain.dag import DAG
from leoflow.domain.planning import (
    LIVE_STATES,
    Candidate,
    Limits,
    RunPlan,
    TryId,
    choose_queued,
    fail_try,
    mark_queued,
    new_task_instances,
    plan_run,
    runs_to_start,
    start_run,
)
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.schedule import parse_schedule
from leoflow.domain.states import DagRunState, DagRunType, TaskInstanceState
from leoflow.domain.templating import RenderError
from leoflow.domain.timetable import DagRunInfo, DataInterval, due_runs, generate_run_id
from leoflow.domain.try_events import Report, apply_report
from leoflow.executors.port import Executor, Reconciling, TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.scheduler.dispatch import build_request, ti_try_key
from leoflow.scheduler.metrics import SchedulerMetrics
from leoflow.store.fence import Fence
from leoflow.store.port import MAX_TXN_OPS, InvalidKey, Op, StoreError, TooManyOperations, ValueTooLarge
from leoflow.store.repos import Repositories, codec
from leoflow.store.repos.base import TIKey, Versioned
from leoflow.store.repos.errors import AlreadyExists, Conflict, Fenced, NotFound
from leoflow.store.repos.query import RunQuery
from leoflow.store.repos.task_instances import snapshot_from_entries

log = logging.getLogger("leoflow.scheduler")

Clock = Callable[[], datetime]
RunKey = tuple[str, str]
# Groups larger than one transaction are split; the fence takes one slot.
_GROUP_OPS = MAX_TXN_OPS - 1
_BATCH_CREATE_LIMIT = 55  # tasks per DAG up to which a run is created inside the batch
# Submit failures that no retry can cure: the request itself is what the executor's store refuses.
_PERMANENT_SUBMIT_ERRORS = (ValueTooLarge, InvalidKey, TooManyOperations)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Options:
    executor_name: str = "executor"
    parallelism: int = 32
    # Scheduled runs one DAG may get per wake-up when catching up (Airflow creates one per loop).
    catchup_per_wakeup: int = 16
    dispatch_backoff_max: float = 30.0


@dataclass
class WakeStats:
    """What one wake-up did: the benchmark and the tests read these."""

    runs_planned: int = 0
    decisions: int = 0
    events: int = 0
    submitted: int = 0
    cancelled: int = 0
    created_runs: int = 0
    started_runs: int = 0
    conflicts: int = 0
    run_errors: int = 0
    next_wake: datetime | None = None
    seconds: float = 0.0


@dataclass
class _Retry:
    request: TryRequest
    attempts: int
    due: float
    scheduled_at: datetime | None


@dataclass
class _Chunk:
    ops: list[Op] = field(default_factory=list)
    records: dict[str, TaskInstance] = field(default_factory=dict)
    finishes_run: bool = False
    handle: Any = None


@dataclass
class _RunState:
    """One active run as read this wake-up: the versioned run and its versioned task instances."""

    run: Versioned[DagRun]
    tis: dict[str, Versioned[TaskInstance]] = field(default_factory=dict)
    loaded: bool = False


class Scheduler:
    """The decision loop of the leader. Thread-safe entry points: ``wake_up`` (one at a time)."""

    def __init__(
        self,
        repos: Repositories,
        executor: Executor,
        *,
        fence: Callable[[], Fence],
        metrics: SchedulerMetrics | None = None,
        options: Options | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.repos = repos
        self.executor = executor
        self._fence = fence
        self.metrics = metrics or SchedulerMetrics()
        self.options = options or Options(executor_name=getattr(executor, "name", "executor"))
        self.clock = clock
        self._dags: dict[tuple[str, int], DAG] = {}
        # Decoded task instances per run, by store key and modify index: the store is read every
        # wake-up, but an entry that did not change is not decoded again.
        self._decoded: dict[RunKey, dict[str, Versioned[TaskInstance]]] = {}
        self._prefixes: dict[RunKey, str] = {}
        self._last_scheduled: dict[str, DataInterval | None] = {}
        self._live: dict[TryKey, RunKey] = {}
        self._retries: dict[TryKey, _Retry] = {}
        self._inbox: list[TryEvent] = []
        # Generations let the event pump wait until *its* events are written (not merely until
        # some wake-up ended), before it asks the executor for more (which acknowledges these).
        self._inbox_cond = threading.Condition()
        self._gen_added = 0
        self._gen_written = 0
        self._taken: tuple[list[TryEvent], int] = ([], 0)
        self._lock = threading.Lock()

    # ---- inputs ----------------------------------------------------------------------------------
    def add_events(self, events: Iterable[TryEvent]) -> int:
        """Queue executor events for the next wake-up; returns their generation for ``wait_written``."""
        with self._inbox_cond:
            self._inbox.extend(events)
            self._gen_added += 1
            return self._gen_added

    def wait_written(self, generation: int, timeout: float) -> bool:
        """True once the events of ``generation`` (and older) are durably applied."""
        with self._inbox_cond:
            return self._inbox_cond.wait_for(lambda: self._gen_written >= generation, timeout)

    def _take_events(self) -> list[TryEvent]:
        with self._inbox_cond:
            events, self._inbox = self._inbox, []
            self._taken = (events, self._gen_added)
        return events

    def _events_done(self) -> None:
        with self._inbox_cond:
            self._gen_written = max(self._gen_written, self._taken[1])
            self._taken = ([], self._taken[1])
            self._inbox_cond.notify_all()

    def _events_failed(self) -> None:
        """A wake-up failed after taking events: put them back, in order, for the next one."""
        with self._inbox_cond:
            events = self._taken[0]
            self._inbox = [*events, *self._inbox]
            self._taken = ([], self._taken[1])

    def reset(self) -> None:
        """Forget every cache: called when leadership is (re)gained."""
        with self._lock:
            self._last_scheduled.clear()
            self._decoded.clear()
            self._live.clear()
            self._retries.clear()

    # ---- helpers ---------------------------------------------------------------------------------
    def dag_of(self, dag_id: str, version: int) -> DAG:
        key = (dag_id, version)
        dag = self._dags.get(key)
        if dag is None:
            loaded = self.repos.dags.dag(dag_id, version)
            if loaded is None:
                raise LookupError(f"DAG {dag_id!r} version {version} is not in the store")
            dag = self._dags[key] = loaded
        return dag

    def _load(self, rs: _RunState) -> _RunState:
        if not rs.loaded:
            r = rs.run.record
            key = (r.dag_id, r.run_id)
            prefix = self._prefixes.get(key)
            if prefix is None:
                prefix = self._prefixes[key] = self.repos.keyspace.ti_run_prefix(r.dag_id, r.run_id)
            entries = self.repos.store.list(prefix)
            # Keyspace layout: below the run prefix, one segment is the packed value of a compacted
            # run, two segments a current task instance, three an earlier try.
            current = [e for e in entries if e.key.count("/", len(prefix)) == 1]
            if len(current) + sum(1 for e in entries if e.key.count("/", len(prefix)) == 2) != len(entries):
                snap = snapshot_from_entries(r.dag_id, r.run_id, prefix, entries)  # compacted: decode all
                rs.tis = {v.record.task_id: v for v in snap.current if v.record.map_index == -1}
                self._decoded.pop(key, None)
            else:
                old = self._decoded.get(key, {})
                fresh: dict[str, Versioned[TaskInstance]] = {}
                for e in current:
                    hit = old.get(e.key)
                    if hit is None or hit.index != e.modify_index:
                        hit = Versioned(codec.decode(TaskInstance, e.key, e.value), e.modify_index, e.create_index)
                    fresh[e.key] = hit
                self._decoded[key] = fresh
                rs.tis = {v.record.task_id: v for v in fresh.values() if v.record.map_index == -1}
            rs.loaded = True
        return rs

    def _xcom_reader(self, run: DagRun) -> Callable[[str, str], Any]:
        def read(task_id: str, key: str) -> Any:
            entry = self.repos.xcom.get(TIKey(run.dag_id, run.run_id, task_id), key)
            return None if entry is None else entry.value

        return read

    def _variable_reader(self, key: str) -> str | None:
        found = self.repos.variables.get(key)
        return None if found is None else found.record.value

    # ---- recovery --------------------------------------------------------------------------------
    def recover(self) -> int:
        """On becoming leader: resubmit every queued try (idempotent per try), track running ones.

        A queued try may or may not have reached the executor before the previous leader died;
        ``submit`` is idempotent per (task instance, try number), so sending it again is safe and
        the try number is unchanged. Returns how many tries were resubmitted.
        """
        self.reset()
        resubmitted = 0
        queued: list[TryKey] = []
        for run_v in self.repos.runs.active():
            rs = self._load(_RunState(run_v))
            run = run_v.record
            for v in rs.tis.values():
                ti = v.record
                if ti.state is TaskInstanceState.RUNNING:
                    self._live[ti_try_key(ti)] = (run.dag_id, run.run_id)
                elif ti.state is TaskInstanceState.QUEUED:
                    try:
                        dag = self.dag_of(run.dag_id, run.dag_version_number)
                        request = build_request(dag, dag.tasks[ti.task_id], run, ti,
                                                xcom=self._xcom_reader(run), variables=self._variable_reader)
                    except (RenderError, KeyError, LookupError) as exc:
                        self._refuse(ti_try_key(ti), f"cannot rebuild the queued try: {exc}")
                        continue
                    self._submit(request, ti.scheduled_dttm)
                    queued.append(request.key)
                    resubmitted += 1
        if isinstance(self.executor, Reconciling):
            try:
                self.executor.reconcile([*queued, *self._live])
            except Exception as exc:  # a reconcile failure must not keep a new leader from scheduling
                log.warning("executor reconcile failed", extra={"error": str(exc)})
        log.info("recovered as leader", extra={"resubmitted": resubmitted, "running": len(self._live)})
        return resubmitted

    # ---- the wake-up -----------------------------------------------------------------------------
    def wake_up(self, reasons: Iterable[str] = ("timer",)) -> WakeStats:
        with self._lock:
            started = time.perf_counter()
            for reason in set(reasons) or {"timer"}:
                self.metrics.wakeups.labels(reason=reason).inc()
            stats = WakeStats()
            try:
                self._wake(stats)
            except (Fenced, StoreError):
                self._events_failed()
                self.metrics.store_errors.labels(op="wakeup").inc()
                raise
            except BaseException:
                self._events_failed()
                raise
            finally:
                stats.seconds = time.perf_counter() - started
                self.metrics.wakeup_seconds.observe(stats.seconds)
            return stats

    def _wake(self, stats: WakeStats) -> None:
        now = self.clock()
        fence = self._fence()
        entries = {e.state.dag_id: e for e in self.repos.dags.list()}
        runs: dict[RunKey, _RunState] = {
            (v.record.dag_id, v.record.run_id): _RunState(v) for v in self.repos.runs.active()
        }
        wake: list[datetime] = []

        # Phase 1: facts.
        batch = self.repos.batch(fence)
        touched_tis: set[RunKey] = set()
        event_groups = self._apply_events(batch, runs, stats)
        touched_tis |= set(event_groups)
        created, next_runs = self._create_due_runs(batch, entries, runs, now, stats)
        wake.extend(next_runs)
        run_handles = self._start_runs(batch, entries, runs, now)
        if len(batch):
            result = batch.commit()
            stats.conflicts += len(result.conflicts)
            for handle in result.conflicts:
                log.info("decision lost a compare-and-set; re-planned next wake-up", extra={"what": handle.what})
            for key, handle in run_handles.items():
                if handle.ok:
                    runs[key] = _RunState(handle.result)
                    self.metrics.decisions.labels(kind="run_started").inc()
                    stats.started_runs += 1
            stats.created_runs = sum(1 for h in created.values() if h is None or h.ok)
            if stats.created_runs:
                self.metrics.decisions.labels(kind="run_created").inc(stats.created_runs)
            for handles in event_groups.values():
                for h, ev in handles:
                    if h.ok:
                        if ev.terminal:
                            self._live.pop(ev.key, None)
                    else:
                        self._retry_event(ev, runs, fence)
            for key in touched_tis:
                if key in runs:
                    runs[key].loaded = False
        self._events_done()

        # Phase 2: decisions.
        pools = {v.record.name: v.record.slots for v in self.repos.pools.all()}
        limits = Limits(parallelism=self.options.parallelism, pools=pools)
        plans: dict[RunKey, tuple[RunPlan, DAG]] = {}
        orphan_runs = {rk for rk in self._live.values() if rk not in runs}
        for rk in orphan_runs:
            got = self.repos.runs.get(*rk)
            if got is not None:
                runs[rk] = _RunState(got)
        for key, rs in runs.items():
            run = rs.run.record
            if run.state is DagRunState.QUEUED:
                continue
            try:
                self._load(rs)
                dag = self.dag_of(run.dag_id, run.dag_version_number)
                entry = entries.get(run.dag_id)
                paused = bool(entry and entry.state.is_paused)
                p = plan_run(dag, run, [v.record for v in rs.tis.values()], now, paused=paused)
            except (StoreError, Fenced):
                raise
            except Exception as exc:  # one poison run must not stop the others
                stats.run_errors += 1
                self.metrics.run_errors.inc()
                log.exception("planning a run failed; other runs continue",
                              extra={"dag_id": run.dag_id, "run_id": run.run_id, "error": str(exc)})
                continue
            plans[key] = (p, dag)
            stats.runs_planned += 1
            if p.wake_at is not None:
                wake.append(p.wake_at)

        candidates = []
        live_tis: list[TaskInstance] = []
        for key, (p, dag) in plans.items():
            run = runs[key].run.record
            live_tis.extend(t for t in p.task_instances if t.state in LIVE_STATES)
            if run.state is DagRunState.RUNNING:
                candidates.extend(Candidate(t, run.run_after, dag.max_active_tasks) for t in p.ready)
        selection = choose_queued(candidates, live_tis, limits)
        depth: dict[str, int] = dict.fromkeys(pools, 0)
        depth.setdefault("default_pool", 0)
        for held in selection.held:
            depth[held.ti.pool] = depth.get(held.ti.pool, 0) + 1
        for pool, n in depth.items():
            self.metrics.queue_depth.labels(pool=pool).set(n)

        # Render the chosen tries now; a template error fails the try instead of queueing it.
        requests: dict[TryKey, tuple[TryRequest, datetime | None]] = {}
        overrides: dict[RunKey, dict[str, TaskInstance]] = {}
        for ti in selection.chosen:
            key = (ti.dag_id, ti.run_id)
            p, dag = plans[key]
            run = runs[key].run.record
            try:
                queued = mark_queued(ti, now, self.options.executor_name)
                request = build_request(dag, dag.tasks[ti.task_id], run, queued, xcom=self._xcom_reader(run),
                                        variables=self._variable_reader)
            except RenderError as exc:
                failed = fail_try(dataclasses.replace(ti, start_date=now), dag.tasks.get(ti.task_id), now, str(exc),
                                  dag_id=dag.dag_id, logical_date=run.logical_date)
                overrides.setdefault(key, {})[ti.task_id] = failed
                self.metrics.decisions.labels(kind="render_failed").inc()
                continue
            overrides.setdefault(key, {})[ti.task_id] = queued
            requests[ti_try_key(queued)] = (request, ti.scheduled_dttm)

        batch = self.repos.batch(fence)
        chunks_of: list[tuple[RunKey, RunPlan, list[_Chunk]]] = []
        for key, (p, _dag) in plans.items():
            records: dict[str, TaskInstance] = {c.new.task_id: c.new for c in p.changes}
            records.update(overrides.get(key, {}))
            if not records and p.new_run is None:
                continue
            chunks = self._chunks(runs[key], records, p.new_run)
            for chunk in chunks:
                chunk.handle = batch.add_ops(f"plan of run {key[1]!r} of DAG {key[0]!r}", chunk.ops)
            chunks_of.append((key, p, chunks))
        if len(batch):
            result = batch.commit()
            stats.conflicts += len(result.conflicts)

        # Phase 3: act on what landed (a chunk is atomic; chunks of one big run land independently).
        why = {(key, c.new.task_id): c.why for key, (p, _d) in plans.items() for c in p.changes}
        for key, p, chunks in chunks_of:
            landed: set[str] = set()
            for chunk in chunks:
                if chunk.handle is not None and chunk.handle.ok:
                    landed |= set(chunk.records)
                    if chunk.finishes_run and p.new_run is not None:
                        self.metrics.decisions.labels(kind=f"run_{p.new_run.state.value}").inc()
                        stats.decisions += 1
                        log.info("run finished",
                                 extra={"dag_id": key[0], "run_id": key[1], "state": p.new_run.state.value})
                else:
                    log.info("decisions lost a compare-and-set; re-planned next wake-up",
                             extra={"dag_id": key[0], "run_id": key[1], "tasks": sorted(chunk.records)})
            for cancel in p.cancels:
                if cancel.key.task_id in landed:
                    self._cancel(cancel.key, cancel.reason)
                    stats.cancelled += 1
            for chunk in chunks:
                for tid in sorted(set(chunk.records) & landed):
                    ti = chunk.records[tid]
                    if (key, tid) in why:
                        self.metrics.decisions.labels(kind=why[(key, tid)].split(",")[-1]).inc()
                        stats.decisions += 1
                    tk = ti_try_key(ti)
                    if ti.state is TaskInstanceState.QUEUED and tk in requests:
                        request, scheduled_at = requests[tk]
                        self.metrics.decisions.labels(kind="queued").inc()
                        stats.decisions += 1
                        if self._submit(request, scheduled_at):
                            stats.submitted += 1
        stats.submitted += self._adopt_queued(runs, plans)

        # Dispatch retries that are due; next wake-up.
        mono = time.monotonic()
        for tk, retry in list(self._retries.items()):
            if retry.due <= mono:
                del self._retries[tk]
                if self._submit(retry.request, retry.scheduled_at, attempts=retry.attempts):
                    stats.submitted += 1
        if self._retries:
            soonest = min(r.due for r in self._retries.values())
            wake.append(now + timedelta(seconds=max(0.0, soonest - time.monotonic())))
        with self._inbox_cond:
            if self._inbox:  # refusals queued by this wake-up: apply them at once
                wake.append(now)
        self._update_gauges(runs, plans)
        for gone in set(self._decoded) - set(runs):
            del self._decoded[gone]
        for gone in set(self._prefixes) - set(runs):
            del self._prefixes[gone]
        future = [w for w in wake if w is not None]
        stats.next_wake = min(future) if future else None

    def _chunks(self, rs: _RunState, records: dict[str, TaskInstance], new_run: DagRun | None) -> list[_Chunk]:
        """A run's writes as atomic groups of at most one transaction; a TI's ops never split.

        The run's own update goes in the last group, so a run is finished only together with
        the last of its task instances' changes.
        """
        chunks = [_Chunk()]
        for tid, new in sorted(records.items()):
            old = rs.tis.get(tid)
            ops = (self.repos.task_instances.create_ops([new]) if old is None
                   else self.repos.task_instances.transition_ops(old, new))
            if len(chunks[-1].ops) + len(ops) > _GROUP_OPS:
                chunks.append(_Chunk())
            chunks[-1].ops.extend(ops)
            chunks[-1].records[tid] = new
        if new_run is not None:
            ops = self.repos.runs.update_ops(rs.run, new_run)
            if len(chunks[-1].ops) + len(ops) > _GROUP_OPS:
                chunks.append(_Chunk())
            chunks[-1].ops.extend(ops)
            chunks[-1].finishes_run = True
        return [c for c in chunks if c.ops]

    def _adopt_queued(self, runs: dict[RunKey, _RunState], plans: dict[RunKey, tuple[RunPlan, DAG]]) -> int:
        """Submit queued tries this leader does not track (a write landed but its submit never ran).

        Submitting is idempotent per try, so this can only help; in steady state it finds nothing.
        """
        submitted = 0
        for key, (p, dag) in plans.items():
            run = runs[key].run.record
            for ti in p.task_instances:
                tk = ti_try_key(ti)
                if ti.state is not TaskInstanceState.QUEUED or tk in self._live or tk in self._retries:
                    continue
                try:
                    request = build_request(dag, dag.tasks[ti.task_id], run, ti, xcom=self._xcom_reader(run),
                                            variables=self._variable_reader)
                except (RenderError, KeyError) as exc:
                    self._refuse(tk, f"cannot rebuild the queued try: {exc}")
                    continue
                log.info("submitting a queued try this leader did not track", extra={"task": ti.task_id,
                                                                                    "run_id": ti.run_id})
                if self._submit(request, ti.scheduled_dttm):
                    submitted += 1
        return submitted

    # ---- phase 1 parts ---------------------------------------------------------------------------
    def _apply_events(self, batch: Any, runs: dict[RunKey, _RunState], stats: WakeStats) -> dict[RunKey, list]:
        events = self._take_events()
        stats.events = len(events)
        # Apply events in order per task instance; write each TI once with its final state.
        pending: dict[tuple[RunKey, str], tuple[Versioned[TaskInstance], TaskInstance, list[TryEvent], list[Op]]] = {}
        for ev in events:
            rk = (ev.key.dag_id, ev.key.run_id)
            rs = runs.get(rk)
            if rs is None:
                got = self.repos.runs.get(*rk)
                if got is None:
                    log.info("event for an unknown run dropped", extra={"run_id": ev.key.run_id})
                    continue
                rs = runs[rk] = _RunState(got)
            self._load(rs)
            tkey = (rk, ev.key.task_id)
            if tkey in pending:
                orig, cur, evs, xops = pending[tkey]
            else:
                orig = rs.tis.get(ev.key.task_id)  # type: ignore[assignment]
                if orig is None:
                    log.info("event for an unknown task instance dropped", extra={"task": ev.key.task_id})
                    continue
                cur, evs, xops = orig.record, [], []
            applied = self._apply_one(rs.run.record, cur, ev)
            if applied is None:
                if ev.terminal:  # dropped as stale: nothing will report this try again
                    self._live.pop(ev.key, None)
                continue
            new, extra_ops = applied
            pending[tkey] = (orig, new, [*evs, ev], [*xops, *extra_ops])
        groups: dict[RunKey, list] = {}
        for (rk, task_id), (orig, new, evs, xops) in pending.items():
            ops = [*self.repos.task_instances.transition_ops(orig, new), *xops]
            handle = batch.add_ops(f"report for task {task_id!r} of run {rk[1]!r}", ops)
            for ev in evs:
                groups.setdefault(rk, []).append((handle, ev))
            self.metrics.decisions.labels(kind=f"event_{new.state.value if new.state else 'none'}").inc()
        return groups

    def _apply_one(self, run: DagRun, ti: TaskInstance, ev: TryEvent) -> tuple[TaskInstance, list[Op]] | None:
        try:
            dag = self.dag_of(run.dag_id, run.dag_version_number)
            task = dag.tasks.get(ti.task_id)
        except LookupError:
            task = None
        report = Report(try_number=ev.key.try_number, outcome=ev.outcome.value,  # type: ignore[arg-type]
                        at=ev.at, exit_code=ev.exit_code, reason=ev.reason, hostname=ev.hostname,
                        executor_ref=ev.executor_ref, xcom_return=ev.xcom_return)
        applied = apply_report(ti, report, task=task, dag_id=run.dag_id, logical_date=run.logical_date)
        if applied.ti is None:
            log.info("report dropped", extra={"task": ti.task_id, "run_id": ti.run_id, "why": applied.why})
            return None
        ops: list[Op] = []
        if applied.xcom is not None:
            key, value = applied.xcom
            ops = self.repos.xcom.set_ops(TIKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index), key, value,
                                          try_number=ti.try_number, timestamp=ev.at)
        return applied.ti, ops

    def _retry_event(self, ev: TryEvent, runs: dict[RunKey, _RunState], fence: Fence) -> None:
        """An event whose write lost a race: re-read the task instance and apply it again, now.

        Events are acknowledged to the executor once this wake-up ends, so they must land (or be
        found stale) before that; a few re-reads settle any race with an API write.
        """
        key = TIKey(ev.key.dag_id, ev.key.run_id, ev.key.task_id, ev.key.map_index)
        for _ in range(5):
            cur = self.repos.task_instances.get(key)
            rs = runs.get((key.dag_id, key.run_id))
            run = rs.run.record if rs is not None else None
            if cur is None or run is None:
                return
            applied = self._apply_one(run, cur.record, ev)
            if applied is None:
                return
            new, xops = applied
            batch = self.repos.batch(fence)
            handle = batch.add_ops(f"report for task {key.task_id!r} (retry)",
                                   [*self.repos.task_instances.transition_ops(cur, new), *xops])
            batch.commit()
            if handle.ok:
                if ev.terminal:
                    self._live.pop(ev.key, None)
                return
        log.warning("an executor report lost five races in a row; dropped", extra={"task": key.task_id})

    def _last_automated(self, dag_id: str) -> DataInterval | None:
        if dag_id not in self._last_scheduled:
            page = self.repos.runs.list(RunQuery(dag_ids=[dag_id], run_types=[DagRunType.SCHEDULED],
                                                 order_by="-logical_date", limit=1))
            last = page.items[0].record if page.items else None
            self._last_scheduled[dag_id] = (
                DataInterval(last.data_interval_start or last.run_after, last.data_interval_end or last.run_after)
                if last is not None else None
            )
        return self._last_scheduled[dag_id]

    def _create_due_runs(self, batch: Any, entries: dict[str, Any], runs: dict[RunKey, _RunState], now: datetime,
                         stats: WakeStats) -> tuple[dict[RunKey, Any], list[datetime]]:
        created: dict[RunKey, Any] = {}
        wake: list[datetime] = []
        active_per_dag: dict[str, int] = {}
        for dag_id, _run_id in runs:
            active_per_dag[dag_id] = active_per_dag.get(dag_id, 0) + 1
        for dag_id, entry in entries.items():
            state = entry.state
            if state.is_paused or state.is_stale or entry.latest is None or entry.summary is None:
                continue
            schedule = entry.summary.schedule
            try:
                if not parse_schedule(schedule).is_periodic and parse_schedule(schedule).kind != "once":
                    continue
                dag = self.dag_of(dag_id, entry.latest.version_number)
                room = dag.max_active_runs - active_per_dag.get(dag_id, 0)
                if room <= 0:
                    continue
                due, nxt = due_runs(dag, last_automated=self._last_automated(dag_id), now=now,
                                    limit=min(room, self.options.catchup_per_wakeup))
            except (StoreError, Fenced):
                raise
            except Exception as exc:
                stats.run_errors += 1
                self.metrics.run_errors.inc()
                log.exception("cannot compute the next run of a DAG", extra={"dag_id": dag_id, "error": str(exc)})
                continue
            for info in due:
                run = self._scheduled_run(dag, entry, info, now)
                tis = new_task_instances(dag, run)
                key = (dag_id, run.run_id)
                if len(tis) <= _BATCH_CREATE_LIMIT:
                    created[key] = batch.create_run(run, tis)
                else:
                    try:
                        self.repos.runs.create(run, tis, fence=batch.fence)
                        created[key] = None
                    except AlreadyExists:
                        pass
                self._last_scheduled[dag_id] = info.data_interval
            if nxt is not None:
                wake.append(nxt.run_after)
            self._publish_next(dag_id, state, nxt, batch.fence)
        return created, wake

    def _scheduled_run(self, dag: DAG, entry: Any, info: DagRunInfo, now: datetime) -> DagRun:
        return DagRun(
            dag_id=dag.dag_id,
            run_id=generate_run_id(DagRunType.SCHEDULED, info.run_after),
            run_type=DagRunType.SCHEDULED,
            state=DagRunState.QUEUED,
            run_after=info.run_after,
            dag_version_number=entry.latest.version_number,
            bundle_version=entry.latest.bundle_version,
            logical_date=info.logical_date,
            data_interval_start=info.data_interval.start,
            data_interval_end=info.data_interval.end,
            queued_at=now,
            triggered_by="timetable",
        )

    def _publish_next(self, dag_id: str, state: Any, nxt: DagRunInfo | None, fence: Fence | None) -> None:
        """Keep the DAG's ``next_dagrun_*`` (what the UI shows) in step; written only when it changes."""
        want = (
            nxt.logical_date if nxt else None,
            nxt.data_interval.start if nxt else None,
            nxt.data_interval.end if nxt else None,
            nxt.run_after if nxt else None,
        )
        have = (state.next_dagrun_logical_date, state.next_dagrun_data_interval_start,
                state.next_dagrun_data_interval_end, state.next_dagrun_run_after)
        if want == have:
            return
        try:
            self.repos.dags.set_next_dagrun(dag_id, logical_date=want[0], data_interval_start=want[1],
                                            data_interval_end=want[2], run_after=want[3], fence=fence)
        except Conflict:
            log.info("next run of a DAG not published (concurrent change); retried later", extra={"dag_id": dag_id})
        except NotFound:
            log.info("next run of a DAG not published: the DAG was deleted meanwhile", extra={"dag_id": dag_id})

    def _start_runs(self, batch: Any, entries: dict[str, Any], runs: dict[RunKey, _RunState],
                    now: datetime) -> dict[RunKey, Any]:
        queued = [rs.run.record for rs in runs.values() if rs.run.record.state is DagRunState.QUEUED]
        if not queued:
            return {}
        running: dict[str, int] = {}
        for rs in runs.values():
            if rs.run.record.state is DagRunState.RUNNING:
                running[rs.run.record.dag_id] = running.get(rs.run.record.dag_id, 0) + 1
        limits: dict[str, int] = {}
        paused = []
        for dag_id, entry in entries.items():
            if entry.summary is not None:
                limits[dag_id] = entry.summary.max_active_runs
            if entry.state.is_paused:
                paused.append(dag_id)
        handles = {}
        for run in runs_to_start(queued, running, limits, paused):
            key = (run.dag_id, run.run_id)
            handles[key] = batch.update_run(runs[key].run, start_run(run, now))
        return handles

    # ---- actions ---------------------------------------------------------------------------------
    def _refuse(self, key: TryKey, reason: str) -> None:
        """Fail a queued try that can never reach the executor, as if the executor had reported it.

        Going through the inbox keeps one path for every try outcome: the next wake-up applies it
        fenced by try number (a duplicate is dropped as stale) and the retry policy decides.
        """
        self._retries.pop(key, None)
        self.metrics.decisions.labels(kind="submit_refused").inc()
        log.error("queued try failed: it cannot be handed to the executor",
                  extra={"task": key.task_id, "run_id": key.run_id, "try_number": key.try_number, "error": reason})
        self.add_events([TryEvent(key, TryOutcome.FAILED, self.clock(), reason=reason)])

    def _submit(self, request: TryRequest, scheduled_at: datetime | None, attempts: int = 0) -> bool:
        """Hand a durable queued try to the executor; a failure is retried later, try unchanged."""
        try:
            self.executor.submit(request)
        except _PERMANENT_SUBMIT_ERRORS as exc:
            self._refuse(request.key, f"the executor cannot accept this try: {exc}")
            return False
        except Exception as exc:  # the executor's infrastructure failed; the try stays queued
            self.metrics.dispatch_failures.inc()
            delay = min(0.5 * 2**attempts, self.options.dispatch_backoff_max)
            self._retries[request.key] = _Retry(request, attempts + 1, time.monotonic() + delay, scheduled_at)
            log.warning("submit failed; retrying without spending a try",
                        extra={"task": request.key.task_id, "run_id": request.key.run_id, "error": str(exc),
                               "retry_in": delay})
            return False
        self._live[request.key] = (request.key.dag_id, request.key.run_id)
        if scheduled_at is not None:
            self.metrics.dispatch_seconds.observe(max(0.0, (self.clock() - scheduled_at).total_seconds()))
        return True

    def _cancel(self, key: TryKey, reason: str) -> None:
        self._retries.pop(key, None)
        try:
            self.executor.cancel(key, reason)
        except Exception as exc:
            self.metrics.store_errors.labels(op="cancel").inc()
            log.warning("cancel failed", extra={"task": key.task_id, "run_id": key.run_id, "error": str(exc)})
            return
        self.metrics.decisions.labels(kind="cancel").inc()
        self._live.pop(key, None)

    def _update_gauges(self, runs: dict[RunKey, _RunState], plans: dict[RunKey, tuple[RunPlan, DAG]]) -> None:
        by_state = {"queued": 0, "running": 0}
        ti_states: dict[str, int] = {s.value: 0 for s in TaskInstanceState}
        ti_states["none"] = 0
        for key, rs in runs.items():
            run = rs.run.record
            if run.state.value in by_state:
                by_state[run.state.value] += 1
            if key in plans:
                for t in plans[key][0].task_instances:
                    ti_states[t.state.value if t.state else "none"] += 1
        for state, n in by_state.items():
            self.metrics.runs.labels(state=state).set(n)
        for state, n in ti_states.items():
            self.metrics.task_instances.labels(state=state).set(n)

    @property
    def live_tries(self) -> Sequence[TryKey]:
        return sorted(self._live)


__all__ = ["Options", "Scheduler", "TryId", "WakeStats"]
