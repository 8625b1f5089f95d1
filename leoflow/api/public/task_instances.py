"""Task instances: list (per run, ``~`` run, ``~`` DAG), get, tries, mark, clear, links, batch list.

Reads cost one store request per run in scope (a run's TIs and their try history are one
prefix); run-level filters (dates of the run, run id and DAG id patterns) are applied to the
runs first, so a filtered listing reads only the runs it can match. Marking and clearing are
decided by ``leoflow.domain.actions`` and written with compare-and-set (``_apply``).

Leoflow has no mapped tasks and no task groups: every task instance has ``map_index`` -1,
``listMapped`` answers Airflow's "not mapped" 404, and task-group endpoints answer 404 for the
group they name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _apply, _bodies, _query, _runs
from leoflow.api.public._runs import Versions
from leoflow.domain import actions
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import FINISHED_TI_STATES, TaskInstanceState
from leoflow.store.repos.base import TIKey, Versioned
from leoflow.store.repos.query import RunQuery

TI_STATES = [s.value for s in TaskInstanceState] + ["awaiting_input"]


class Row(NamedTuple):
    """One TI with its run. A tuple, not a frozen dataclass: a window's listing builds 1,200 of
    these per poll, and a frozen dataclass's ``__init__`` costs several times a tuple's."""

    ti: TaskInstance
    run: Versioned[DagRun]


def _updated_at(ti: TaskInstance) -> datetime | None:
    stamps = [d for d in (ti.scheduled_dttm, ti.queued_dttm, ti.start_date, ti.end_date) if d is not None]
    return max(stamps) if stamps else None


SORTING: _query.Sorting[Row] = _query.Sorting(
    keys={
        # Airflow's TI id is a time-ordered uuid7: creation order, i.e. the run's, then task order.
        "id": lambda r: (r.run.create_index, r.ti.task_id, r.ti.map_index),
        "state": lambda r: None if r.ti.state is None else str(r.ti.state),
        "duration": lambda r: r.ti.duration,
        "start_date": lambda r: r.ti.start_date,
        "end_date": lambda r: r.ti.end_date,
        "map_index": lambda r: r.ti.map_index,
        "try_number": lambda r: r.ti.try_number,
        "logical_date": lambda r: r.run.record.logical_date,
        "run_after": lambda r: r.run.record.run_after,
        "data_interval_start": lambda r: r.run.record.data_interval_start,
        "data_interval_end": lambda r: r.run.record.data_interval_end,
        "rendered_map_index": lambda r: (None, r.ti.map_index),
        "operator": lambda r: r.ti.operator,
    },
    default="map_index",
    primary_key="id",
)


def _run_predicates(req: falcon.Request) -> list[Callable[[Versioned[DagRun]], bool]]:
    """Filters that only look at the run: applied before the run's TIs are read."""
    preds: list[Callable[[Versioned[DagRun]], bool]] = []
    preds += _query.datetime_ranges(req, "run_after", lambda v: v.record.run_after)
    preds += _query.datetime_ranges(req, "logical_date", lambda v: v.record.logical_date)
    preds += _query.patterns(req, "dag_id", lambda v: v.record.dag_id)
    preds += _query.patterns(req, "run_id", lambda v: v.record.run_id)
    return preds


def _ti_predicates(req: falcon.Request) -> list[Callable[[Row], bool]]:
    preds: list[Callable[[Row], bool]] = []
    task_id = dto.query_str(req, "task_id")
    if task_id is not None:
        preds.append(lambda r: r.ti.task_id == task_id)
    preds += _query.datetime_ranges(req, "start_date", lambda r: r.ti.start_date)
    preds += _query.datetime_ranges(req, "end_date", lambda r: r.ti.end_date)
    preds += _query.datetime_ranges(req, "updated_at", lambda r: _updated_at(r.ti))
    preds += _query.number_ranges(req, "duration", lambda r: r.ti.duration)
    preds += _query.patterns(req, "task_display_name", lambda r: r.ti.task_id)
    if dto.query_str(req, "task_group_id") is not None:
        preds.append(lambda r: False)  # no task groups in Leoflow
    states = _query.enum_list(req, "state", TI_STATES, nulls=("none", "no_status"))
    # TaskInstanceState is a StrEnum: it hashes and compares as its value, so no str() per row.
    preds += _query.any_of(states, lambda r: r.ti.state)
    preds += _query.any_of(dto.query_list(req, "pool"), lambda r: r.ti.pool)
    preds += _query.patterns(req, "pool_name", lambda r: r.ti.pool)
    preds += _query.any_of(dto.query_list(req, "queue"), lambda r: r.ti.queue)
    preds += _query.patterns(req, "queue_name", lambda r: r.ti.queue)
    preds += _query.any_of(dto.query_list(req, "executor"), lambda r: r.ti.executor)
    preds += _query.any_of(_ints(req, "version_number"), lambda r: r.ti.dag_version_number)
    preds += _query.any_of(_ints(req, "try_number"), lambda r: r.ti.try_number)
    preds += _query.any_of(dto.query_list(req, "operator"), lambda r: r.ti.operator)
    preds += _query.patterns(req, "operator_name", lambda r: r.ti.operator)
    preds += _query.any_of(_ints(req, "map_index"), lambda r: r.ti.map_index)
    preds += _query.patterns(req, "rendered_map_index", lambda r: None)
    return preds


def _all_of(preds: list[Callable[[Any], bool]]) -> Callable[[Any], bool] | None:
    """One predicate for the TI filters (None: keep all): a window holds 1,200 rows per poll, and
    a generator over a list of predicates per row cost more than the filtering itself."""
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    return lambda r: all(p(r) for p in preds)


def _ints(req: falcon.Request, name: str) -> list[int]:
    out = []
    for raw in dto.query_list(req, name):
        try:
            out.append(int(raw))
        except ValueError:
            raise problem.invalid(f"query.{name}", f"{raw!r} is not a valid integer") from None
    return out


class _RowCache:
    """The rows of a run, kept while both the run record and its TI list are the very same objects
    (the projection and the TI repository's ``SnapshotCache`` hand out the same objects until
    something changes): a poll of a day's window then builds no rows at all. Bounded; a race
    between threads only rebuilds a list."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._rows: dict[tuple[str, str], tuple[Versioned[DagRun], list[Versioned[TaskInstance]], list[Row]]] = {}

    def rows(self, run: Versioned[DagRun], tis: list[Versioned[TaskInstance]]) -> list[Row]:
        key = (run.record.dag_id, run.record.run_id)
        hit = self._rows.get(key)
        if hit is not None and hit[0] is run and hit[1] is tis:
            return hit[2]
        rows = [Row(v.record, run) for v in tis]
        if len(self._rows) >= self.size:
            self._rows.clear()
        self._rows[key] = (run, tis, rows)
        return rows


def rows_for_runs(ctx: Any, runs: Iterable[Versioned[DagRun]], cache: _RowCache | None = None) -> list[Row]:
    out: list[Row] = []
    repo = ctx.repos.task_instances
    for run in runs:
        # A finished run's compacted TIs are kept while its record is unchanged (ADR 0066).
        settled = run.index if run.record.state.finished else None
        tis = repo.list_for_run(run.record.dag_id, run.record.run_id, settled_at=settled)
        out.extend(cache.rows(run, tis) if cache is not None else [Row(v.record, run) for v in tis])
    return out


def _runs_in_scope(ctx: Any, dag_id: str, dag_run_id: str, req: falcon.Request) -> list[Versioned[DagRun]]:
    if not dto.is_wildcard(dag_run_id):
        if dto.is_wildcard(dag_id):
            raise problem.bad_request("dag_id is required when dag_run_id is specified")
        return [_runs.peek_run(ctx, dag_id, dag_run_id)]
    if not dto.is_wildcard(dag_id):
        _runs.require_dag_entry(ctx, dag_id)
    dag_ids = None if dto.is_wildcard(dag_id) else [dag_id]
    bounds = {f"run_after_{op}": dto.query_datetime(req, f"run_after_{op}") for op in ("gte", "gt", "lte", "lt")}
    return list(ctx.repos.runs.list(RunQuery(dag_ids=dag_ids, limit=None, **bounds)).items)


def _shape(versions: Versions) -> Callable[[Row], dict[str, Any]]:
    return lambda r: _runs.ti_response(r.ti, r.run.record, versions)


# Orderings whose first key belongs to the run: rows of one run are then contiguous in the result.
RUN_LEVEL_KEYS: dict[str, Callable[[Versioned[DagRun]], Any]] = {
    "id": lambda v: v.create_index,
    "run_after": lambda v: v.record.run_after,
    "logical_date": lambda v: v.record.logical_date,
    "data_interval_start": lambda v: v.record.data_interval_start,
    "data_interval_end": lambda v: v.record.data_interval_end,
}
# Cursor pages across many runs count matches only up to this many (``total_entries_limit``), as
# Airflow caps its count (50,000 there; 250 here: each run is one store read, about 25 runs).
CURSOR_COUNT_LIMIT = 250


def _cursor_by_runs(
    ctx: Any, req: falcon.Request, runs: list[Versioned[DagRun]], ti_preds: list[Callable[[Row], bool]],
    orders: list[dto.Order], cache: _RowCache | None = None,
) -> dict[str, Any]:
    """A cursor page over the TIs of many runs, reading runs in result order and stopping early.

    The Browse > Task Instances page asks for ``~/~`` newest first; reading every run of the
    store for 50 rows would cost one store read per run. Since the first sort key is the run's,
    runs are visited in that order (runs with equal keys together) and reading stops once the
    page, the probe for a next page and the count up to ``CURSOR_COUNT_LIMIT`` are known.
    """
    first = orders[0]
    run_key = RUN_LEVEL_KEYS[first.field]
    by = [dto.Order("k", first.descending)]
    if first.field != "id":  # "id" is the creation order itself
        by.append(dto.Order("c", first.descending))
    ordered_runs = dto.sort_rows(runs, by, {"k": run_key, "c": lambda v: v.create_index})
    page = dto.page(req)
    raw = req.get_param("cursor") or ""
    start = 0
    if raw:  # dto's cursors are positions; a backward one ("~" + end) starts one page earlier
        start = max(0, dto._decode_cursor(raw[1:]) - page.limit) if raw.startswith("~") else dto._decode_cursor(raw)
    needed = max(start + page.limit + 1, CURSOR_COUNT_LIMIT)
    rows: list[Row] = []
    i = 0
    exhausted = True
    while i < len(ordered_runs):
        group = [ordered_runs[i]]
        value = run_key(ordered_runs[i])
        i += 1
        while i < len(ordered_runs) and run_key(ordered_runs[i]) == value:
            group.append(ordered_runs[i])
            i += 1
        batch = [r for r in rows_for_runs(ctx, group, cache) if all(p(r) for p in ti_preds)]
        rows.extend(dto.sort_rows(batch, orders, SORTING.keys))
        if len(rows) >= needed and i < len(ordered_runs):
            exhausted = False
            break
    cpage = dto.cursor_page(req, rows, limit=page.limit)
    versions = Versions(ctx)
    return {
        "task_instances": [_runs.ti_response(r.ti, r.run.record, versions) for r in cpage.rows],
        "total_entries": len(rows) if exhausted else min(len(rows), CURSOR_COUNT_LIMIT),
        "total_entries_limit": None if exhausted else CURSOR_COUNT_LIMIT,
        "next_cursor": cpage.next_cursor,
        "previous_cursor": cpage.previous_cursor,
    }


class TaskInstanceCollection:
    roles = {"GET": Role.VIEWER, "PATCH": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.rows = _RowCache()

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        runs = _runs_in_scope(self.ctx, dag_id, dag_run_id, req)
        run_preds = _run_predicates(req)
        ti_preds = _ti_predicates(req)
        keep_run = _all_of(run_preds)
        if keep_run is not None:
            runs = [r for r in runs if keep_run(r)]
        orders = SORTING.orders(dto.query_list(req, "order_by"))
        if dto.is_cursor_mode(req) and len(runs) > 1 and orders[0].field in RUN_LEVEL_KEYS:
            resp.media = _cursor_by_runs(self.ctx, req, runs, ti_preds, orders, self.rows)
            return
        keep = _all_of(ti_preds)
        rows = rows_for_runs(self.ctx, runs, self.rows)
        resp.media = _query.listing(
            req, rows if keep is None else [r for r in rows if keep(r)], (), SORTING, "task_instances",
            _shape(Versions(self.ctx)), cursor_allowed=True,
        )

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        """Bulk update (mark/note) of task instances; delete is refused per entity (not supported)."""
        body = _bodies.parse(req, _bodies.BulkTaskInstances)
        out: dict[str, Any] = {}
        for action in body.actions:  # type: ignore[attr-defined]
            result = out.setdefault(action.action, {"success": [], "errors": []})
            if action.action != "update":
                result["errors"].append({
                    "error": f"bulk {action.action} of task instances is not supported by Leoflow; "
                             "use update (new_state, note) or clearTaskInstances",
                    "status_code": 501,
                })
                continue
            for entity in action.entities:
                d = entity.dag_id or dag_id
                r = entity.dag_run_id or dag_run_id
                label = f"{d}.{r}.{entity.task_id}[{entity.map_index if entity.map_index is not None else -1}]"
                try:
                    if dto.is_wildcard(d) or dto.is_wildcard(r):
                        raise problem.bad_request(f"{label}: a concrete dag_id and dag_run_id are required")
                    fields = entity.model_fields_set - {"task_id", "map_index", "dag_id", "dag_run_id"}
                    if action.update_mask:
                        fields &= set(action.update_mask)
                    patch_ti(self.ctx, req, d, r, entity.task_id,
                             -1 if entity.map_index is None else entity.map_index, entity, fields, dry_run=False)
                    result["success"].append(label)
                except falcon.HTTPError as exc:
                    if exc.status_code == 404 and action.action_on_non_existence == "skip":
                        continue
                    result["errors"].append({"error": exc.description or exc.title, "status_code": exc.status_code})
        resp.media = {k: out.get(k) for k in ("create", "update", "delete")}


class _OneTaskInstance:
    """A route naming one task instance, either ``…/{task_id}`` (map_index from the query) or
    ``…/{task_id}/{map_index}`` (Airflow registers both shapes for several endpoints)."""

    def __init__(self, ctx: Any, *, mapped_route: bool) -> None:
        self.ctx = ctx
        self.mapped_route = mapped_route

    def _map_index(self, req: falcon.Request, params: dict[str, str]) -> int:
        if self.mapped_route:
            return dto.path_int("map_index", params["map_index"], minimum=-1)
        return _query.map_index(req)

    def _locate(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> tuple[DagRun, TaskInstance]:
        """The run and the task instance, or Airflow's 404 for whichever is missing first."""
        run = _runs.require_run(self.ctx, dag_id, run_id).record
        return run, _runs.require_ti(self.ctx, dag_id, run_id, task_id, map_index).record


class TaskInstanceItem(_OneTaskInstance):
    """``…/taskInstances/{task_id}`` and ``…/{task_id}/{map_index}`` (plus their ``/dry_run``)."""

    roles = {"GET": Role.VIEWER, "PATCH": Role.USER, "DELETE": Role.USER}

    def __init__(self, ctx: Any, *, mapped_route: bool, dry_run: bool = False) -> None:
        super().__init__(ctx, mapped_route=mapped_route)
        self.dry_run = dry_run

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
               **params: str) -> None:
        map_index = self._map_index(req, params) if self.mapped_route else -1
        run, ti = self._locate(dag_id, dag_run_id, task_id, map_index)
        resp.media = _runs.ti_response(ti, run, Versions(self.ctx))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
                 **params: str) -> None:
        map_index = self._map_index(req, params)
        body = _bodies.parse(req, _bodies.PatchTaskInstanceBody)
        mask = dto.update_mask(req, {"new_state", "note"})
        fields = (_bodies.fields_set(body) if mask is None else mask) & {"new_state", "note"}
        tis, run = patch_ti(self.ctx, req, dag_id, dag_run_id, task_id, map_index, body, fields,
                            dry_run=self.dry_run)
        versions = Versions(self.ctx)
        runs = {run.run_id: run}
        shaped = []
        for t in tis:
            if t.run_id not in runs:
                other = self.ctx.repos.runs.get(t.dag_id, t.run_id)
                runs[t.run_id] = other.record if other else run
            shaped.append(_runs.ti_response(t, runs[t.run_id], versions))
        resp.media = {"task_instances": shaped, "total_entries": len(shaped)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
                  **params: str) -> None:
        _runs.require_ti(self.ctx, dag_id, dag_run_id, task_id, _query.map_index(req))
        raise problem.not_implemented("deleting a single task instance (clear it, or delete the whole run)")


def patch_ti(
    ctx: Any,
    req: falcon.Request,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    body: Any,
    fields: set[str],
    *,
    dry_run: bool,
) -> tuple[list[TaskInstance], DagRun]:
    """Mark (``new_state``, with relatives/past/future) and/or set the note of one task instance."""
    if not fields:
        raise problem.bad_request("nothing to update: send new_state and/or note", field="body")

    def attempt() -> tuple[list[TaskInstance], DagRun]:
        anchor = _runs.require_run(ctx, dag_id, run_id)
        _runs.require_ti(ctx, dag_id, run_id, task_id, map_index)
        affected: list[TaskInstance] = []
        if "new_state" in fields:
            dag = _runs.dag_for_run(ctx, anchor.record)
            if body.include_past or body.include_future:
                in_scope = actions.select_runs(
                    [v.record for v in ctx.repos.runs.for_dag(dag_id)], anchor.record,
                    past=body.include_past, future=body.include_future,
                )
                versioned = [ctx.repos.runs.get(dag_id, r.run_id) for r in in_scope]
                runs = [v for v in versioned if v is not None]
            else:
                runs = [anchor]
            scope = _apply.load_scope(ctx, runs, for_write=not dry_run)
            try:
                result = actions.set_task_instance_state(
                    dag, scope.runs[(dag_id, run_id)].record, scope.run_records(), scope.ti_records(),
                    task_ids=[task_id], state=TaskInstanceState(body.new_state), now=ctx.clock(),
                    upstream=body.include_upstream, downstream=body.include_downstream,
                    past=body.include_past, future=body.include_future,
                )
            except actions.ActionError as exc:
                raise problem.bad_request(str(exc), field="body.new_state") from None
            if dry_run:
                return list(result.previous), anchor.record
            _apply.apply(ctx, scope, result)
            affected = list(result.task_instances)
        if "note" in fields and not dry_run:
            current = _runs.require_ti(ctx, dag_id, run_id, task_id, map_index)
            if current.record.note != body.note:
                current = ctx.repos.task_instances.transition(
                    current, dataclasses.replace(current.record, note=body.note)
                )
            affected = [t for t in affected if t.task_id != task_id or t.map_index != map_index] + [current.record]
        elif "note" in fields and dry_run and not affected:
            affected = [_runs.require_ti(ctx, dag_id, run_id, task_id, map_index).record]
        fresh = _runs.require_run(ctx, dag_id, run_id).record
        return _runs.sorted_tis(affected), fresh

    tis, run = _runs.with_cas_retry(attempt, f"task instance {task_id!r} of run {run_id!r}")
    if not dry_run:
        _runs.audit(ctx, req, "patch_task_instance", dag_id=dag_id, run_id=run_id, task_id=task_id,
                    map_index=map_index, logical_date=run.logical_date,
                    extra={k: getattr(body, k) for k in sorted(fields | {"include_upstream", "include_downstream",
                                                                         "include_past", "include_future"})})
    return tis, run


class TaskInstanceTries(_OneTaskInstance):
    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
               **params: str) -> None:
        map_index = self._map_index(req, params)
        run, _ = self._locate(dag_id, dag_run_id, task_id, map_index)
        tries = self.ctx.repos.task_instances.tries(TIKey(dag_id, dag_run_id, task_id, map_index))
        versions = Versions(self.ctx)
        number = params.get("task_try_number")
        if number is None:
            resp.media = {"task_instances": [_runs.ti_history_response(t, run, versions) for t in tries],
                          "total_entries": len(tries)}
            return
        wanted = dto.path_int("task_try_number", number)
        for t in tries:
            if t.try_number == wanted:
                resp.media = _runs.ti_history_response(t, run, versions)
                return
        raise problem.not_found(
            f"The Task Instance with dag_id: `{dag_id}`, run_id: `{dag_run_id}`, task_id: `{task_id}`, "
            f"try_number: `{wanted}` and map_index: `{map_index}` was not found"
        )


class ClearTaskInstances:
    roles = {"POST": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        body = _bodies.parse(req, _bodies.ClearTaskInstancesBody)
        _runs.require_dag_entry(self.ctx, dag_id)
        latest_dag, latest = _runs.require_latest_dag(self.ctx, dag_id)
        task_ids: list[str] | None = None
        if body.task_ids is not None:
            task_ids = sorted({t if isinstance(t, str) else t[0] for t in body.task_ids})

        def attempt() -> tuple[list[TaskInstance], dict[str, DagRun]]:
            all_runs = self.ctx.repos.runs.for_dag(dag_id)
            if body.dag_run_id is not None:
                anchor = self.ctx.repos.runs.get(dag_id, body.dag_run_id)
                if anchor is None:
                    raise problem.not_found(f"Dag Run id {body.dag_run_id} not found in dag {dag_id}")
                if (body.include_past or body.include_future) and anchor.record.logical_date is None:
                    raise problem.bad_request(
                        "Cannot use include_past or include_future with no logical_date"
                        "(e.g. manually or asset-triggered)."
                    )
                chosen = {r.run_id for r in actions.select_runs(
                    [v.record for v in all_runs], anchor.record, past=body.include_past, future=body.include_future)}
                runs = [v for v in all_runs if v.record.run_id in chosen]
                dag = _runs.dag_for_run(self.ctx, anchor.record)
            else:
                start, end = body.start_date, body.end_date
                runs = [
                    v for v in all_runs
                    if (start is None or (v.record.logical_date is not None and v.record.logical_date >= start))
                    and (end is None or (v.record.logical_date is not None and v.record.logical_date <= end))
                ]
                dag = latest_dag
            scope = _apply.load_scope(self.ctx, runs, for_write=not body.dry_run)
            try:
                result = actions.clear(
                    dag, scope.run_records(), scope.ti_records(), now=self.ctx.clock(), task_ids=task_ids,
                    include_upstream=body.include_upstream, include_downstream=body.include_downstream,
                    only_failed=body.only_failed, only_running=body.only_running,
                    reset_dag_runs=body.reset_dag_runs,
                    dag_version_number=latest.version_number if body.run_on_latest_version else None,
                )
            except actions.ActionError as exc:
                raise problem.bad_request(str(exc), field="body.task_ids") from None
            run_map = {k[1]: v.record for k, v in scope.runs.items()}
            if body.dry_run:
                return list(result.previous), run_map
            if body.prevent_running_task:
                running = [t for t in result.previous if t.state is TaskInstanceState.RUNNING]
                if running:
                    raise problem.conflict(
                        "AirflowClearRunningTaskException: Task instances in running state cannot be cleared "
                        f"while prevent_running_task is set: {', '.join(t.task_id for t in running)}"
                    )
            if body.note is not None:
                result = dataclasses.replace(
                    result, task_instances=tuple(dataclasses.replace(t, note=body.note) for t in result.task_instances)
                )
            _apply.apply(self.ctx, scope, result)
            for r in result.runs:
                run_map[r.run_id] = r
            return list(result.task_instances), run_map

        tis, run_map = _runs.with_cas_retry(attempt, f"clear task instances of DAG {dag_id!r}")
        if not body.dry_run:
            _runs.audit(self.ctx, req, "post_clear_task_instances", dag_id=dag_id, run_id=body.dag_run_id,
                        extra=body.model_dump(mode="json", exclude={"dry_run"}) | {"cleared": len(tis)})
        versions = Versions(self.ctx)
        shaped = [_runs.ti_response(t, run_map.get(t.run_id), versions) for t in _runs.sorted_tis(tis)]
        resp.media = {"task_instances": shaped, "total_entries": len(shaped)}


class ExtraLinks:
    """Leoflow tasks declare no operator extra links: an honest empty map."""

    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str) -> None:
        _runs.require_run(self.ctx, dag_id, dag_run_id)
        _runs.require_ti(self.ctx, dag_id, dag_run_id, task_id, _query.map_index(req))
        dto.query_int(req, "try_number", minimum=0)
        resp.media = {"extra_links": {}, "total_entries": 0}


class Dependencies(_OneTaskInstance):
    """Why a task instance is not running yet: its upstream tasks that have not succeeded."""

    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
               **params: str) -> None:
        run, ti = self._locate(dag_id, dag_run_id, task_id, self._map_index(req, params))
        deps: list[dict[str, str]] = []
        if ti.state is None or ti.state in (TaskInstanceState.SCHEDULED, TaskInstanceState.UP_FOR_RETRY):
            dag = _runs.dag_for_run(self.ctx, run)
            task = dag.tasks.get(task_id)
            if task is not None and task.upstream:
                states = {v.record.task_id: v.record.state
                          for v in self.ctx.repos.task_instances.list_for_run(dag_id, dag_run_id)}
                waiting = sorted(u for u in task.upstream if states.get(u) not in FINISHED_TI_STATES)
                if waiting:
                    deps.append({
                        "name": "Trigger Rule",
                        "reason": f"Task's trigger rule '{task.trigger_rule.value}' is not met yet: upstream "
                                  f"task(s) not finished: {', '.join(waiting)}",
                    })
            if ti.state is TaskInstanceState.UP_FOR_RETRY and ti.next_retry_at is not None:
                deps.append({"name": "Not In Retry Period",
                             "reason": f"Task is not ready for retry yet; it will be retried at "
                                       f"{dto.iso(ti.next_retry_at)}"})
            if str(run.state) == "queued":
                deps.append({"name": "Dagrun Running", "reason": "Task instance's dagrun is queued, not running"})
        resp.media = {"dependencies": deps}


class ListMapped:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str) -> None:
        run = _runs.require_run(self.ctx, dag_id, dag_run_id).record
        dag = _runs.dag_for_run(self.ctx, run)
        if task_id not in dag.tasks:
            raise problem.not_found(f"Task id {task_id} not found")
        raise problem.not_found(f"Task id {task_id} is not mapped")


class TaskGroupInstances:
    roles = {"PATCH": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str,
                 group_id: str) -> None:
        _runs.require_run(self.ctx, dag_id, dag_run_id)
        _bodies.parse(req, _bodies.PatchTaskInstanceBody)
        raise problem.not_found(f"Task group {group_id} not found in Dag {dag_id} (Leoflow has no task groups)")


class TaskInstanceBatchList:
    """``POST /dags/~/dagRuns/~/taskInstances/list``: the list with filters in a JSON body."""

    roles = {"POST": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.rows = _RowCache()

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        if not dto.is_wildcard(dag_id):
            raise problem.invalid("path.dag_id", "Input should be '~'")
        if not dto.is_wildcard(dag_run_id):
            raise problem.invalid("path.dag_run_id", "Input should be '~'")
        body = _bodies.parse(req, _bodies.TaskInstancesBatchBody)
        raw = body.model_dump()
        run_preds: list[Callable[[Versioned[DagRun]], bool]] = []
        run_preds += _query.body_ranges(raw, "run_after", lambda v: v.record.run_after)
        run_preds += _query.body_ranges(raw, "logical_date", lambda v: v.record.logical_date)
        if body.dag_ids:
            run_preds += _query.any_of(body.dag_ids, lambda v: v.record.dag_id)
        if body.dag_run_ids:
            run_preds += _query.any_of(body.dag_run_ids, lambda v: v.record.run_id)
        dag_ids = body.dag_ids or None
        runs = [v for v in self.ctx.repos.runs.list(RunQuery(dag_ids=dag_ids, limit=None)).items
                if all(p(v) for p in run_preds)]
        preds: list[Callable[[Row], bool]] = []
        preds += _query.body_ranges(raw, "start_date", lambda r: r.ti.start_date)
        preds += _query.body_ranges(raw, "end_date", lambda r: r.ti.end_date)
        preds += _query.body_ranges(raw, "duration", lambda r: r.ti.duration)
        if body.task_ids:
            preds += _query.any_of(body.task_ids, lambda r: r.ti.task_id)
        if body.state:
            preds += _query.any_of(body.state, lambda r: None if r.ti.state is None else str(r.ti.state))
        for name in ("pool", "queue", "executor"):
            values = getattr(body, name)
            if values:
                preds += _query.any_of(values, lambda r, n=name: getattr(r.ti, n))
        resp.media = _query.listing(
            req, rows_for_runs(self.ctx, runs, self.rows), preds, SORTING, "task_instances",
            _shape(Versions(self.ctx)), order_by=[body.order_by] if body.order_by else [],
            limit=min(body.page_limit or dto.DEFAULT_LIMIT, dto._max_limit(req)), offset=body.page_offset,
        )


def register(app: falcon.App, ctx: Any) -> None:
    base = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"
    app.add_route(base, TaskInstanceCollection(ctx))
    app.add_route(base + "/list", TaskInstanceBatchList(ctx))
    app.add_route(base + "/{task_id}", TaskInstanceItem(ctx, mapped_route=False))
    app.add_route(base + "/{task_id}/dry_run", TaskInstanceItem(ctx, mapped_route=False, dry_run=True))
    app.add_route(base + "/{task_id}/{map_index}", TaskInstanceItem(ctx, mapped_route=True))
    app.add_route(base + "/{task_id}/{map_index}/dry_run", TaskInstanceItem(ctx, mapped_route=True, dry_run=True))
    app.add_route(base + "/{task_id}/tries", TaskInstanceTries(ctx, mapped_route=False))
    app.add_route(base + "/{task_id}/tries/{task_try_number}", TaskInstanceTries(ctx, mapped_route=False))
    app.add_route(base + "/{task_id}/{map_index}/tries", TaskInstanceTries(ctx, mapped_route=True))
    app.add_route(base + "/{task_id}/{map_index}/tries/{task_try_number}", TaskInstanceTries(ctx, mapped_route=True))
    app.add_route(base + "/{task_id}/links", ExtraLinks(ctx))
    app.add_route(base + "/{task_id}/dependencies", Dependencies(ctx, mapped_route=False))
    app.add_route(base + "/{task_id}/{map_index}/dependencies", Dependencies(ctx, mapped_route=True))
    app.add_route(base + "/{task_id}/listMapped", ListMapped(ctx))
    app.add_route("/api/v2/dags/{dag_id}/clearTaskInstances", ClearTaskInstances(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskGroupInstances/{group_id}", TaskGroupInstances(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskGroupInstances/{group_id}/dry_run",
                  TaskGroupInstances(ctx))
