"""The scheduler's brain: a pure function from a run snapshot and ``now`` to decisions.

``plan_run`` looks at one run (its DAG version, its task instances, the time) and says which
task instances change state and why, which live tries must be killed, whether the run ends, and
when it next needs a look. ``choose_queued`` then picks, across every run, which scheduled task
instances may start now under Airflow's limits (per-run ``max_active_tasks``, pools with slots,
``parallelism``), highest ``priority_weight`` first. Nothing here reads a clock or a store; the
loop (``leoflow.scheduler``) supplies snapshots and writes the decisions with compare-and-set,
so replaying a snapshot replays the decisions exactly (and the tests can pin them).

Semantics follow Airflow 3 (``DagRun.update_state``, ``TriggerRuleDep``,
``_executable_task_instances_to_queued``) with one deliberate shortcut: settled states
(skipped/upstream_failed) cascade down the whole graph within one plan, where Airflow needs one
scheduler loop per level. The outcome is the same; it just arrives sooner.

Live tries: a task instance keeps ``executor_ref`` while a try may be alive on an executor. Any
task instance that holds one while its state is not ``queued``/``running`` (a user marked or
cleared it, a timeout hit) gets its try cancelled and the ref dropped; that single rule is how
"mark failed", "clear" and "dagrun_timeout" kill processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from leoflow.domain.actions import priority_weight_total
from leoflow.domain.dag import DAG, DEFAULT_POOL, Task
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.relatives import graph_of, relevant_setups
from leoflow.domain.retry import can_retry, next_retry_at
from leoflow.domain.states import DagRunState, TaskInstanceState, TriggerRule
from leoflow.domain.trigger_rules import (
    SetupCounts,
    UpstreamCounts,
    Verdict,
    combine,
    evaluate,
    evaluate_setup_constraint,
)

TIS = TaskInstanceState
LIVE_STATES = frozenset({TIS.QUEUED, TIS.RUNNING})
FINISHED = frozenset({TIS.SUCCESS, TIS.FAILED, TIS.SKIPPED, TIS.UPSTREAM_FAILED, TIS.REMOVED})
FAILED_STATES = frozenset({TIS.FAILED, TIS.UPSTREAM_FAILED})
SUCCESS_STATES = frozenset({TIS.SUCCESS, TIS.SKIPPED})
# Unfinished states that still move on their own (so the run is not deadlocked).
PROGRESSING = frozenset({TIS.SCHEDULED, TIS.QUEUED, TIS.RUNNING, TIS.UP_FOR_RETRY, TIS.RESTARTING,
                         TIS.DEFERRED, TIS.UP_FOR_RESCHEDULE})
# Airflow's defaults: [core] parallelism and default_pool's slots.
DEFAULT_PARALLELISM = 32
DEFAULT_POOL_SLOTS = 128


@dataclass(frozen=True)
class Change:
    """One task instance moving from ``old`` to ``new`` (``old`` is None for a created one)."""

    old: TaskInstance | None
    new: TaskInstance
    why: str


@dataclass(frozen=True, order=True)
class TryId:
    """Which try of which task instance (the executor port calls it ``TryKey``)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int


@dataclass(frozen=True)
class Cancel:
    key: TryId
    reason: str


@dataclass(frozen=True)
class RunPlan:
    run: DagRun
    new_run: DagRun | None = None
    changes: tuple[Change, ...] = ()
    cancels: tuple[Cancel, ...] = ()
    # Task instances in ``scheduled`` after this plan: candidates for ``choose_queued``.
    ready: tuple[TaskInstance, ...] = ()
    # Earliest future moment this run needs a look even if nothing else happens (retry, timeout).
    wake_at: datetime | None = None
    # Every task instance of the run as it stands after the plan (for counting and queueing).
    task_instances: tuple[TaskInstance, ...] = ()

    @property
    def empty(self) -> bool:
        return self.new_run is None and not self.changes and not self.cancels


@dataclass(frozen=True)
class Limits:
    parallelism: int = DEFAULT_PARALLELISM
    # Pool name -> slots. ``default_pool`` falls back to Airflow's 128 when not configured.
    pools: Mapping[str, int] = field(default_factory=dict)

    def pool_slots(self, name: str) -> int | None:
        if name in self.pools:
            return self.pools[name]
        return DEFAULT_POOL_SLOTS if name == DEFAULT_POOL else None


def try_key(ti: TaskInstance, try_number: int | None = None) -> TryId:
    return TryId(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number if try_number is None else try_number)


def new_task_instance(dag: DAG, task: Task, run: DagRun) -> TaskInstance:
    """A fresh task instance as Airflow's ``TaskInstance.insert_mapping`` makes it."""
    return TaskInstance(
        dag_id=dag.dag_id,
        run_id=run.run_id,
        task_id=task.task_id,
        map_index=-1,
        state=None,
        try_number=0,
        max_tries=task.retries,
        pool=task.pool,
        pool_slots=task.pool_slots,
        queue=task.queue,
        priority_weight=priority_weight_total(dag, task.task_id),
        operator=task.operator,
        dag_version_number=run.dag_version_number,
    )


def new_task_instances(dag: DAG, run: DagRun) -> list[TaskInstance]:
    return [new_task_instance(dag, task, run) for _, task in sorted(dag.tasks.items())]


def topological_order(dag: DAG) -> list[str]:
    graph = graph_of(dag)
    pending = {t: len(ups) for t, ups in graph.upstream.items()}
    ready = sorted(t for t, n in pending.items() if n == 0)
    order: list[str] = []
    while ready:
        current = ready.pop()
        order.append(current)
        for d in sorted(graph.downstream[current], reverse=True):
            pending[d] -= 1
            if pending[d] == 0:
                ready.append(d)
    # A cycle (rejected by the loaders) would leave tasks out; plan them last rather than never.
    order.extend(sorted(set(pending) - set(order)))
    return order


def effective_leaves(dag: DAG) -> frozenset[str]:
    """Airflow's ``_tis_for_dagrun_state``: leaves, ignoring teardowns below and teardown leaves."""
    graph = graph_of(dag)
    leaves = {
        tid
        for tid, task in dag.tasks.items()
        if not task.is_teardown and all(dag.tasks[d].is_teardown for d in graph.downstream[tid])
    }
    return frozenset(leaves) if leaves else graph.leaves


def fail_try(ti: TaskInstance, task: Task | None, now: datetime, reason: str, *, exit_code: int | None = None,
          dag_id: str, logical_date: datetime | None) -> TaskInstance:
    """End a try as failed: ``up_for_retry`` with its due time when retries remain, else ``failed``."""
    end = now
    if task is not None and can_retry(task, try_number=ti.try_number, max_tries=ti.max_tries):
        return dataclasses.replace(
            ti, state=TIS.UP_FOR_RETRY, end_date=end, start_date=ti.start_date or end, reason=reason,
            exit_code=exit_code, executor_ref=None,
            next_retry_at=next_retry_at(task, dag_id=dag_id, try_number=ti.try_number, logical_date=logical_date,
                                        end_date=end),
        )
    return dataclasses.replace(ti, state=TIS.FAILED, end_date=end, start_date=ti.start_date or end, reason=reason,
                               exit_code=exit_code, executor_ref=None, next_retry_at=None)


def _settle(ti: TaskInstance, state: TaskInstanceState, now: datetime, reason: str | None = None) -> TaskInstance:
    return dataclasses.replace(ti, state=state, start_date=ti.start_date or now, end_date=now,
                               reason=reason if reason is not None else ti.reason, next_retry_at=None)


def plan_run(dag: DAG, run: DagRun, tis: Sequence[TaskInstance], now: datetime, *, paused: bool = False) -> RunPlan:
    """Decide one run. ``tis`` are its current task instances (missing ones are created).

    Only a ``running`` run is advanced; for any other state the plan only kills tries that are
    still alive for task instances that are no longer queued/running (a run marked failed, say).
    A paused DAG's run is frozen as in Airflow (no new tries, no completion), but its timeouts
    still kill tries.
    """
    cur: dict[str, TaskInstance] = {t.task_id: t for t in tis if t.map_index == -1}
    changes: dict[str, Change] = {}
    cancels: list[Cancel] = []
    wake: list[datetime] = []

    def change(old: TaskInstance | None, new: TaskInstance, why: str) -> None:
        prior = changes.get(new.task_id)
        first_old = prior.old if prior is not None else old
        changes[new.task_id] = Change(first_old, new, why if prior is None else f"{prior.why},{why}")
        cur[new.task_id] = new

    # 1. Kill tries whose task instance has left queued/running.
    for ti in list(cur.values()):
        if ti.executor_ref is not None and ti.state not in LIVE_STATES:
            cancels.append(Cancel(try_key(ti), f"task instance is {ti.state or 'cleared'}"))
            change(ti, dataclasses.replace(ti, executor_ref=None), "cancel")

    if run.state is not DagRunState.RUNNING:
        return _finish(run, None, changes, cancels, wake, cur)

    for task_id, task in dag.tasks.items():
        if task_id not in cur:
            change(None, new_task_instance(dag, task, run), "create")
    # Task instances of tasks the run's DAG version does not have (a clear re-bound the run to a
    # version without them): Airflow's verify_integrity marks them removed.
    for ti in list(cur.values()):
        if ti.task_id not in dag.tasks and ti.state not in FINISHED and ti.state not in LIVE_STATES:
            change(ti, _settle(ti, TIS.REMOVED, now, "task removed from the DAG"), "removed")

    # 2. dagrun_timeout: the run fails, everything unfinished is skipped (and killed).
    if dag.dagrun_timeout is not None and run.start_date is not None:
        deadline = run.start_date + dag.dagrun_timeout
        if deadline < now:
            for ti in list(cur.values()):
                if ti.state not in FINISHED:
                    if ti.state in LIVE_STATES:
                        cancels.append(Cancel(try_key(ti), "dagrun_timeout"))
                    change(ti, dataclasses.replace(_settle(ti, TIS.SKIPPED, now, "dagrun_timeout"), executor_ref=None),
                           "dagrun_timeout")
            new_run = dataclasses.replace(run, state=DagRunState.FAILED, end_date=now)
            return _finish(run, new_run, changes, cancels, wake, cur)
        wake.append(deadline)

    # 3. execution_timeout of running tries.
    for ti in list(cur.values()):
        task = dag.tasks.get(ti.task_id)
        if ti.state is TIS.RUNNING and task is not None and task.execution_timeout is not None and ti.start_date:
            deadline = ti.start_date + task.execution_timeout
            if deadline <= now:
                cancels.append(Cancel(try_key(ti), "execution_timeout"))
                reason = f"execution_timeout: the try ran longer than {task.execution_timeout.total_seconds():g}s"
                change(ti, fail_try(ti, task, now, reason, dag_id=dag.dag_id, logical_date=run.logical_date),
                       "execution_timeout")
            else:
                wake.append(deadline)

    if paused:
        return _finish(run, None, changes, cancels, wake, cur)

    # 4 + 5. Trigger rules in topological order, so settled states cascade in one plan.
    graph = graph_of(dag)
    progressed = False
    for task_id in topological_order(dag):
        ti = cur[task_id]
        task = dag.tasks[task_id]
        if ti.state is TIS.UP_FOR_RETRY:
            if ti.next_retry_at is not None and ti.next_retry_at > now:
                wake.append(ti.next_retry_at)
                continue
        elif ti.state is not None:
            continue
        verdict = _verdict(dag, task, graph.upstream[task_id], cur)
        if verdict is Verdict.WAIT:
            continue
        progressed = True
        if verdict is Verdict.RUN:
            change(ti, dataclasses.replace(ti, state=TIS.SCHEDULED, try_number=ti.try_number + 1,
                                           scheduled_dttm=now, next_retry_at=None, start_date=None,
                                           end_date=None, exit_code=None, queued_dttm=None, hostname=None,
                                           reason=None), "schedule" if ti.state is None else "retry")
        elif verdict is Verdict.SKIP:
            change(ti, _settle(ti, TIS.SKIPPED, now), "trigger_rule_skip")
        else:
            change(ti, _settle(ti, TIS.UPSTREAM_FAILED, now), "upstream_failed")

    # 6. Completion, decided on the (effective) leaves as Airflow does.
    unfinished = [t for t in cur.values() if t.state not in FINISHED]
    new_run: DagRun | None = None
    if not unfinished:
        leaves = [cur[t] for t in effective_leaves(dag) if t in cur and cur[t].state is not TIS.REMOVED]
        if any(t.state in FAILED_STATES for t in leaves):
            new_run = dataclasses.replace(run, state=DagRunState.FAILED, end_date=now)
        else:
            new_run = dataclasses.replace(run, state=DagRunState.SUCCESS, end_date=now)
    elif not progressed and not any(t.state in PROGRESSING for t in unfinished):
        # Airflow's deadlock case: unfinished tasks none of which can ever run.
        new_run = dataclasses.replace(run, state=DagRunState.FAILED, end_date=now,
                                      note=run.note or "deadlock: no task can run")
    return _finish(run, new_run, changes, cancels, wake, cur)


def _verdict(dag: DAG, task: Task, upstream: frozenset[str], cur: Mapping[str, TaskInstance]) -> Verdict:
    if not upstream or task.trigger_rule is TriggerRule.ALWAYS:
        return Verdict.RUN
    if not graph_of(dag).has_setups and not any(u in cur and cur[u].state in FINISHED for u in upstream):
        # No upstream has finished: every rule waits (the tables show none fires on zero done).
        return Verdict.WAIT
    counts = UpstreamCounts.of((cur[u].state if u in cur else None, dag.tasks[u].is_setup) for u in upstream)
    direct = evaluate(task.trigger_rule, counts)
    if task.is_teardown:
        return direct
    indirect = [s for s in relevant_setups(dag, task.task_id) if s not in upstream]
    if not indirect:
        return direct
    states = [cur[s].state if s in cur else None for s in indirect]
    setup = evaluate_setup_constraint(SetupCounts(
        setups=len(indirect),
        success=sum(1 for s in states if s is TIS.SUCCESS),
        skipped=sum(1 for s in states if s is TIS.SKIPPED),
        failed=sum(1 for s in states if s is TIS.FAILED),
        upstream_failed=sum(1 for s in states if s is TIS.UPSTREAM_FAILED),
    ))
    return combine(setup, direct)


def _finish(run: DagRun, new_run: DagRun | None, changes: Mapping[str, Change], cancels: list[Cancel],
            wake: list[datetime], cur: Mapping[str, TaskInstance]) -> RunPlan:
    ordered = tuple(changes[k] for k in sorted(changes))
    ready = tuple(sorted((t for t in cur.values() if t.state is TIS.SCHEDULED), key=lambda t: t.task_id))
    return RunPlan(
        run=run,
        new_run=new_run if new_run is not None and new_run != run else None,
        changes=ordered,
        cancels=tuple(cancels),
        ready=ready if new_run is None or not new_run.state.finished else (),
        wake_at=min(wake) if wake else None,
        task_instances=tuple(cur[k] for k in sorted(cur)),
    )


@dataclass(frozen=True)
class Candidate:
    """A scheduled task instance that may be queued, with what ordering and limits need."""

    ti: TaskInstance
    run_after: datetime
    max_active_tasks: int


@dataclass(frozen=True)
class Skipped:
    ti: TaskInstance
    why: str  # "pool_full", "no_such_pool", "max_active_tasks", "parallelism"


@dataclass(frozen=True)
class Selection:
    chosen: tuple[TaskInstance, ...]
    held: tuple[Skipped, ...]


def choose_queued(candidates: Iterable[Candidate], live: Iterable[TaskInstance], limits: Limits) -> Selection:
    """Which scheduled task instances start now: Airflow's ``_executable_task_instances_to_queued``.

    Order: highest ``priority_weight`` first, then the oldest run (``run_after``), then map index,
    then ids for determinism. Limits, as in Airflow: open slots of the task's pool (a pool that
    does not exist holds its tasks), ``max_active_tasks`` per run (queued + running), and
    ``parallelism`` over everything queued or running. ``live`` are the queued/running task
    instances already holding slots.
    """
    pool_used: dict[str, int] = {}
    run_used: dict[tuple[str, str], int] = {}
    total = 0
    for ti in live:
        if ti.state in LIVE_STATES:
            pool_used[ti.pool] = pool_used.get(ti.pool, 0) + ti.pool_slots
            run_used[(ti.dag_id, ti.run_id)] = run_used.get((ti.dag_id, ti.run_id), 0) + 1
            total += 1
    ordered = sorted(
        candidates,
        key=lambda c: (-c.ti.priority_weight, c.run_after, c.ti.map_index, c.ti.dag_id, c.ti.run_id, c.ti.task_id),
    )
    chosen: list[TaskInstance] = []
    held: list[Skipped] = []
    for c in ordered:
        ti = c.ti
        if total >= limits.parallelism:
            held.append(Skipped(ti, "parallelism"))
            continue
        slots = limits.pool_slots(ti.pool)
        if slots is None:
            held.append(Skipped(ti, "no_such_pool"))
            continue
        if pool_used.get(ti.pool, 0) + ti.pool_slots > slots:
            held.append(Skipped(ti, "pool_full"))
            continue
        rk = (ti.dag_id, ti.run_id)
        if run_used.get(rk, 0) >= c.max_active_tasks:
            held.append(Skipped(ti, "max_active_tasks"))
            continue
        chosen.append(ti)
        pool_used[ti.pool] = pool_used.get(ti.pool, 0) + ti.pool_slots
        run_used[rk] = run_used.get(rk, 0) + 1
        total += 1
    return Selection(tuple(chosen), tuple(held))


def mark_queued(ti: TaskInstance, now: datetime, executor: str) -> TaskInstance:
    """scheduled -> queued; ``executor_ref`` marks the try as possibly alive from here on."""
    return dataclasses.replace(ti, state=TIS.QUEUED, queued_dttm=now, executor=executor, executor_ref=executor)


@dataclass(frozen=True)
class Decisions:
    """``plan``'s answer for one run: the run plan plus which scheduled instances get queued."""

    plan: RunPlan
    queued: tuple[TaskInstance, ...]
    held: tuple[Skipped, ...]


def plan(dag: DAG, run: DagRun, tis: Sequence[TaskInstance], now: datetime, limits: Limits, *,
         executor: str = "executor", paused: bool = False) -> Decisions:
    """One run on its own: ``plan_run`` then ``choose_queued`` against that run's live tries."""
    p = plan_run(dag, run, tis, now, paused=paused)
    sel = choose_queued(
        (Candidate(t, run.run_after, dag.max_active_tasks) for t in p.ready),
        p.task_instances,
        limits,
    )
    return Decisions(p, tuple(mark_queued(t, now, executor) for t in sel.chosen), sel.held)


def runs_to_start(
    queued: Sequence[DagRun],
    running_per_dag: Mapping[str, int],
    max_active_runs: Mapping[str, int],
    paused: Iterable[str] = (),
) -> list[DagRun]:
    """Queued runs that may start now: oldest ``run_after`` first, up to each DAG's ``max_active_runs``."""
    paused_set = set(paused)
    counts = dict(running_per_dag)
    started = []
    for run in sorted(queued, key=lambda r: (r.run_after, r.run_id)):
        if run.dag_id in paused_set:
            continue
        limit = max_active_runs.get(run.dag_id, 16)
        if counts.get(run.dag_id, 0) >= limit:
            continue
        counts[run.dag_id] = counts.get(run.dag_id, 0) + 1
        started.append(run)
    return started


def start_run(run: DagRun, now: datetime) -> DagRun:
    return dataclasses.replace(run, state=DagRunState.RUNNING, start_date=now, end_date=None)
