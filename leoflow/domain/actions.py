"""User actions on runs and task instances (clear, mark success/failed/queued), as Airflow does them.

Every function is pure: it takes the records in scope and ``now`` and returns an
``ActionResult`` with the *changed* records only, plus the records they replace (so the caller
can write each with compare-and-set against what it read, and so a dry run can show exactly what
would change). Nothing here cancels a live try itself: a task instance keeps its
``executor_ref`` while a try may still be alive on an executor, and the scheduler cancels every
try whose task instance has left ``queued``/``running`` (see ``planning``). That keeps "the UI
marked it" and "the process was killed" one mechanism, whichever process made the change.

Sources of truth in Airflow 3: ``clear_task_instances`` (taskinstance.py), ``set_state`` and
``set_dag_run_state_to_*`` (api/common/mark_tasks.py), ``DAG.set_task_instance_state``.

Deliberate difference: Airflow moves a *running* task instance that is cleared to
``restarting`` and, once killed, to ``up_for_retry`` (so it waits ``retry_delay``). We move it
straight to "no state" with a fresh retry budget and let the scheduler kill the old try first;
the user asked for a rerun, and waiting five minutes for it surprises everyone (ADR 0032).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from leoflow.domain.dag import DAG
from leoflow.domain.records import DagRun, TaskInstance, TaskTry
from leoflow.domain.relatives import expand, graph_of, relevant_setups
from leoflow.domain.states import FINISHED_TI_STATES, DagRunState, TaskInstanceState

TIKey = tuple[str, str, int]  # (run_id, task_id, map_index)


class ActionError(ValueError):
    """The request names something that does not exist or is not allowed; the message says which."""


@dataclass(frozen=True)
class ActionResult:
    # New records, in a stable order (run_id, task_id, map_index).
    task_instances: tuple[TaskInstance, ...] = ()
    # What each of ``task_instances`` replaces, same order: the CAS expectation and the dry-run view.
    previous: tuple[TaskInstance, ...] = ()
    # Tries moved to history (the try a clear supersedes).
    history: tuple[TaskTry, ...] = ()
    runs: tuple[DagRun, ...] = ()
    previous_runs: tuple[DagRun, ...] = ()

    def merge(self, other: ActionResult) -> ActionResult:
        """Combine two results over disjoint-or-later changes: a later change of a record wins."""
        tis = {_key(t): t for t in self.task_instances}
        prev = {_key(t): t for t in self.previous}
        for old, new in zip(other.previous, other.task_instances, strict=True):
            k = _key(new)
            prev.setdefault(k, old)
            tis[k] = new
        runs = {r.run_id: r for r in self.runs}
        prev_runs = {r.run_id: r for r in self.previous_runs}
        for old_r, new_r in zip(other.previous_runs, other.runs, strict=True):
            prev_runs.setdefault(old_r.run_id, old_r)
            runs[new_r.run_id] = new_r
        order = sorted(tis)
        run_order = sorted(runs)
        return ActionResult(
            task_instances=tuple(tis[k] for k in order),
            previous=tuple(prev[k] for k in order),
            history=self.history + other.history,
            runs=tuple(runs[r] for r in run_order),
            previous_runs=tuple(prev_runs[r] for r in run_order),
        )


def _key(ti: TaskInstance) -> TIKey:
    return (ti.run_id, ti.task_id, ti.map_index)


def _result(changes: Iterable[tuple[TaskInstance, TaskInstance]], **kw: object) -> ActionResult:
    pairs = sorted(changes, key=lambda p: _key(p[1]))
    return ActionResult(
        task_instances=tuple(new for _, new in pairs),
        previous=tuple(old for old, _ in pairs),
        **kw,  # type: ignore[arg-type]
    )


def select_runs(runs: Sequence[DagRun], anchor: DagRun, *, past: bool, future: bool) -> list[DagRun]:
    """The anchor run plus, on request, runs before/after it by logical date (``run_after`` if none).

    Airflow's ``include_past``/``include_future`` work on logical dates; runs without one (manual
    runs triggered with ``logical_date: null``) are ordered by ``run_after`` instead.
    """

    def when(r: DagRun) -> datetime:
        return r.logical_date or r.run_after

    pivot = when(anchor)
    chosen = []
    for r in runs:
        if r.run_id == anchor.run_id or (past and when(r) <= pivot) or (future and when(r) >= pivot):
            chosen.append(r)
    if not any(r.run_id == anchor.run_id for r in chosen):
        chosen.append(anchor)
    return sorted(chosen, key=when)


def _check_tasks(dag: DAG, task_ids: Iterable[str]) -> None:
    missing = sorted(set(task_ids) - set(dag.tasks))
    if missing:
        raise ActionError(f"task_ids: no such task in DAG {dag.dag_id!r}: {', '.join(missing)}")


def _history_record(ti: TaskInstance, now: datetime) -> TaskTry:
    """Airflow's ``TaskInstanceHistory.record_ti``: an unfinished try is recorded as failed, ended now."""
    if ti.state in FINISHED_TI_STATES:
        return TaskTry(instance=ti)
    return TaskTry(instance=dataclasses.replace(ti, state=TaskInstanceState.FAILED, end_date=ti.end_date or now))


def priority_weight_total(dag: DAG, task_id: str) -> int:
    """Airflow's default ``weight_rule="downstream"``: own weight plus every descendant's."""
    graph = graph_of(dag)
    own = dag.tasks[task_id].priority_weight
    return own + sum(dag.tasks[d].priority_weight for d in graph.descendants.get(task_id, ()))


def clear(
    dag: DAG,
    runs: Sequence[DagRun],
    task_instances: Sequence[TaskInstance],
    *,
    now: datetime,
    task_ids: Collection[str] | None = None,
    include_upstream: bool = False,
    include_downstream: bool = False,
    only_failed: bool = False,
    only_running: bool = False,
    reset_dag_runs: bool = True,
    exclude_task_ids: Collection[str] = (),
    dag_version_number: int | None = None,
) -> ActionResult:
    """Clear task instances of ``runs`` so they run again with a new try.

    ``task_ids=None`` means every task (clearing a whole run). Like Airflow's ``partial_subset``,
    clearing a task without its upstream still clears its relevant setup tasks (and their
    teardowns), because a task inside a setup/teardown scope cannot rerun without its setup.
    Runs that had finished go back to ``queued`` (``clear_number`` + 1) when ``reset_dag_runs``;
    running runs stay running. ``dag_version_number`` re-binds the cleared instances and runs to
    that DAG version (Airflow's ``run_on_latest_version``).
    """
    selected: set[str]
    if task_ids is None:
        selected = set(dag.tasks)
    else:
        _check_tasks(dag, task_ids)
        selected = expand(dag, task_ids, upstream=include_upstream, downstream=include_downstream)
        if not include_upstream:
            for tid in list(selected):
                for setup in relevant_setups(dag, tid):
                    selected.add(setup)
                    selected |= {d for d in graph_of(dag).downstream[setup] if dag.tasks[d].is_teardown}
    selected -= set(exclude_task_ids)
    run_ids = {r.run_id for r in runs}
    changes: list[tuple[TaskInstance, TaskInstance]] = []
    history: list[TaskTry] = []
    for ti in task_instances:
        if ti.run_id not in run_ids or ti.task_id not in selected:
            continue
        if only_failed and ti.state not in (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED):
            continue
        if only_running and ti.state is not TaskInstanceState.RUNNING:
            continue
        if ti.try_number > 0 and ti.state is not None:
            history.append(_history_record(ti, now))
        task = dag.tasks.get(ti.task_id)
        fields: dict[str, object] = {
            "state": None,
            "start_date": None,
            "end_date": None,
            "queued_dttm": None,
            "scheduled_dttm": None,
            "next_retry_at": None,
            "hostname": None,
            "exit_code": None,
            "reason": None,
            # executor_ref stays: the scheduler cancels a try that may still be alive.
        }
        if task is not None:
            fields.update(
                max_tries=ti.try_number + task.retries,
                pool=task.pool,
                pool_slots=task.pool_slots,
                queue=task.queue,
                priority_weight=priority_weight_total(dag, task.task_id),
                operator=task.operator,
            )
        else:
            fields["max_tries"] = max(ti.max_tries, ti.try_number)
        if dag_version_number is not None:
            fields["dag_version_number"] = dag_version_number
        changes.append((ti, dataclasses.replace(ti, **fields)))  # type: ignore[arg-type]

    new_runs: list[tuple[DagRun, DagRun]] = []
    if reset_dag_runs and changes:
        touched = {new.run_id for _, new in changes}
        for run in runs:
            if run.run_id not in touched:
                continue
            if run.state.finished:
                updated = dataclasses.replace(
                    run,
                    state=DagRunState.QUEUED,
                    start_date=None,
                    end_date=None,
                    queued_at=now,
                    clear_number=run.clear_number + 1,
                )
            elif dag_version_number is not None:
                updated = run
            else:
                continue
            if dag_version_number is not None:
                updated = dataclasses.replace(updated, dag_version_number=dag_version_number)
            if updated != run:
                new_runs.append((run, updated))
    return _result(
        changes,
        history=tuple(history),
        runs=tuple(new for _, new in new_runs),
        previous_runs=tuple(old for old, _ in new_runs),
    )


def _set_ti_state(ti: TaskInstance, state: TaskInstanceState, now: datetime) -> TaskInstance:
    """Airflow's ``TaskInstance.set_state``: start_date defaults to now; finished states get an end."""
    end = ti.end_date
    if state in FINISHED_TI_STATES or state is TaskInstanceState.UP_FOR_RETRY:
        end = end or now
    return dataclasses.replace(ti, state=state, start_date=ti.start_date or now, end_date=end)


MARKABLE_TI_STATES = frozenset({TaskInstanceState.SUCCESS, TaskInstanceState.FAILED, TaskInstanceState.SKIPPED})


def set_task_instance_state(
    dag: DAG,
    anchor: DagRun,
    runs: Sequence[DagRun],
    task_instances: Sequence[TaskInstance],
    *,
    task_ids: Collection[str],
    state: TaskInstanceState,
    now: datetime,
    upstream: bool = False,
    downstream: bool = False,
    past: bool = False,
    future: bool = False,
) -> ActionResult:
    """Mark task instances (and relatives, and the same tasks in past/future runs) as ``state``.

    As in Airflow's ``DAG.set_task_instance_state``: the marked instances change only if their
    state differs; afterwards, failed/upstream_failed instances *downstream* of the marked tasks
    are cleared (so marking a failure as success lets the rest of the run continue), which puts a
    finished run back to ``queued``.
    """
    if state not in MARKABLE_TI_STATES:
        raise ActionError(f"new_state: must be one of success, failed, skipped; got {state!r}")
    _check_tasks(dag, task_ids)
    in_scope = select_runs(runs, anchor, past=past, future=future)
    scope_ids = {r.run_id for r in in_scope}
    targets = expand(dag, task_ids, upstream=upstream, downstream=downstream)
    changes = [
        (ti, _set_ti_state(ti, state, now))
        for ti in task_instances
        if ti.run_id in scope_ids and ti.task_id in targets and ti.state is not state
    ]
    marked = _result(changes)
    # Clear failed downstream of the marked tasks (the marked ones themselves excluded).
    after = {_key(t): t for t in task_instances}
    after.update({_key(t): t for t in marked.task_instances})
    downstream_ids = expand(dag, task_ids, upstream=False, downstream=True)
    cleared = clear(
        dag,
        in_scope,
        list(after.values()),
        now=now,
        task_ids=sorted(downstream_ids),
        only_failed=True,
        exclude_task_ids=targets,
    )
    return marked.merge(cleared)


def set_run_state(
    dag: DAG,
    run: DagRun,
    task_instances: Sequence[TaskInstance],
    *,
    state: DagRunState,
    now: datetime,
) -> ActionResult:
    """Mark a run success, failed or queued with Airflow's effects on its task instances.

    * success: every task instance that is not success becomes success (unfinished teardowns
      excepted; while one is unfinished the run itself is left as it is, so it can finish).
    * failed: running instances fail, the ones not started (none/scheduled/queued/up_for_retry)
      are skipped (teardowns excepted); the run fails unless a teardown is still pending.
    * queued: only the run changes; the scheduler then re-evaluates it.
    """
    tis = [t for t in task_instances if t.run_id == run.run_id]
    changes: list[tuple[TaskInstance, TaskInstance]] = []
    set_run = True

    def is_teardown(ti: TaskInstance) -> bool:
        task = dag.tasks.get(ti.task_id)
        return task is not None and task.is_teardown

    if state is DagRunState.SUCCESS:
        unfinished_teardowns = {t.task_id for t in tis if is_teardown(t) and t.state not in FINISHED_TI_STATES}
        set_run = not unfinished_teardowns
        changes = [
            (t, _set_ti_state(t, TaskInstanceState.SUCCESS, now))
            for t in tis
            if t.task_id not in unfinished_teardowns and t.state is not TaskInstanceState.SUCCESS
        ]
    elif state is DagRunState.FAILED:
        running = [t for t in tis if t.state is TaskInstanceState.RUNNING]
        pending = [t for t in tis if t.state is None or (t.state not in FINISHED_TI_STATES and t not in running)]
        changes = [(t, _set_ti_state(t, TaskInstanceState.FAILED, now)) for t in running if not is_teardown(t)]
        changes += [(t, _set_ti_state(t, TaskInstanceState.SKIPPED, now)) for t in pending if not is_teardown(t)]
        set_run = not any(is_teardown(t) for t in running + pending)
    elif state is not DagRunState.QUEUED:
        raise ActionError(f"state: must be one of success, failed, queued; got {state!r}")

    new_run = run
    if set_run and run.state is not state:
        if state is DagRunState.QUEUED:
            new_run = dataclasses.replace(run, state=state, queued_at=now, end_date=None)
        else:
            new_run = dataclasses.replace(run, state=state, end_date=now)
    runs = ((run,), (new_run,)) if new_run is not run else ((), ())
    return _result(changes, runs=runs[1], previous_runs=runs[0])
