"""DAG runs: ``/api/v2/dags/{dag_id}/dagRuns`` and friends, with Airflow 3.3.2's semantics.

List (per DAG or ``~``; offset or cursor paging), get, trigger (conf checked against the DAG's
params), patch (mark state with Airflow's effects on the task instances, note), delete, clear
(dry run lists the task instances a clear would reset), the batch ``list``, bulk patch/delete,
``clearDagRuns`` and the experimental ``wait`` stream.

State changes are decided by ``leoflow.domain.actions`` and written with compare-and-set
(``_apply``); a lost race re-reads and re-decides. Every write records an eventLogs entry.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _apply, _bodies, _query, _runs
from leoflow.api.public._runs import Versions
from leoflow.domain import actions, planning, timetable
from leoflow.domain.params import ParamsError, resolve_params
from leoflow.domain.records import DagRun, TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.errors import AlreadyExists, Conflict
from leoflow.store.repos.query import RunQuery

# Airflow's ``[scheduler] allowed_run_id_pattern`` default, minus ids made only of dots: a run id
# names a log directory, and "." / ".." would traverse out of it.
RUN_ID_PATTERN = re.compile(r"^(?!\.+$)[A-Za-z0-9_.~:+-]+$")
MUTABLE_STATES = frozenset({"queued", "success", "failed"})


def _updated_at(run: DagRun) -> datetime | None:
    """Airflow's ``updated_at`` is the row's last write; ours is the latest state-change time."""
    stamps = [d for d in (run.queued_at, run.start_date, run.end_date) if d is not None]
    return max(stamps) if stamps else run.run_after


def _duration(run: DagRun) -> float | None:
    return _runs.duration(run.start_date, run.end_date)


Item = Versioned[DagRun]

SORTING: _query.Sorting[Item] = _query.Sorting(
    keys={
        "id": lambda v: v.create_index,
        "state": lambda v: str(v.record.state),
        "dag_id": lambda v: v.record.dag_id,
        "run_id": lambda v: v.record.run_id,
        "logical_date": lambda v: v.record.logical_date,
        "partition_date": lambda v: None,
        "run_after": lambda v: v.record.run_after,
        "start_date": lambda v: v.record.start_date,
        "end_date": lambda v: v.record.end_date,
        "updated_at": lambda v: _updated_at(v.record),
        "conf": lambda v: json.dumps(dict(v.record.conf), sort_keys=True, default=str),
        "duration": lambda v: _duration(v.record),
    },
    default="id",
    primary_key="id",
    aliases={"dag_run_id": "run_id"},
)


def _all_runs(ctx: Any, dag_id: str, req: falcon.Request | None = None) -> list[Item]:
    """Runs of one DAG (or all), narrowed in the repository by the cheap filters the UI polls with.

    The full predicates are applied afterwards anyway; this only avoids sorting runs that a
    ``state=running&state=queued`` probe (sent on every screen, every few seconds) can never match.
    """
    dag_ids = None if dto.is_wildcard(dag_id) else [dag_id]
    states: list[str] | None = None
    bounds: dict[str, Any] = {}
    if req is not None:
        wanted = [s for s in dto.query_list(req, "state") if s in {x.value for x in DagRunState}]
        if wanted and len(wanted) == len(dto.query_list(req, "state")):
            states = wanted
        for op in ("gte", "gt", "lte", "lt"):
            bounds[f"run_after_{op}"] = dto.query_datetime(req, f"run_after_{op}")
    query = RunQuery(dag_ids=dag_ids, states=states, limit=None, **bounds)
    return list(ctx.repos.runs.list(query).items)


def _query_predicates(req: falcon.Request) -> list[Callable[[Item], bool]]:
    preds: list[Callable[[Item], bool]] = []
    r: Callable[[Item], DagRun] = lambda v: v.record  # noqa: E731
    preds += _query.datetime_ranges(req, "run_after", lambda v: r(v).run_after)
    preds += _query.datetime_ranges(req, "logical_date", lambda v: r(v).logical_date)
    preds += _query.datetime_ranges(req, "start_date", lambda v: r(v).start_date)
    preds += _query.datetime_ranges(req, "end_date", lambda v: r(v).end_date)
    preds += _query.datetime_ranges(req, "updated_at", lambda v: _updated_at(r(v)))
    preds += _query.number_ranges(req, "duration", lambda v: _duration(r(v)))
    conf_contains = dto.query_str(req, "conf_contains")
    if conf_contains is not None:
        preds.append(lambda v: conf_contains in json.dumps(dict(r(v).conf), default=str))
    preds += _query.any_of(_query.enum_list(req, "run_type", [t.value for t in DagRunType] + [
        "operator_triggered", "asset_materialization"]), lambda v: str(r(v).run_type))
    preds += _query.any_of(_query.enum_list(req, "state", [s.value for s in DagRunState]), lambda v: str(r(v).state))
    versions = []
    for raw in dto.query_list(req, "dag_version"):
        try:
            versions.append(int(raw))
        except ValueError:
            raise problem.invalid("query.dag_version", f"{raw!r} is not a valid integer") from None
    preds += _query.any_of(versions, lambda v: r(v).dag_version_number)
    bundle_version = dto.query_str(req, "bundle_version")
    if bundle_version is not None:
        preds.append(lambda v: r(v).bundle_version == bundle_version)
    preds += _query.patterns(req, "run_id", lambda v: r(v).run_id)
    preds += _query.patterns(req, "triggering_user_name", lambda v: r(v).triggering_user_name)
    preds += _query.patterns(req, "dag_id", lambda v: r(v).dag_id)
    # Leoflow has no partitioned runs and no assets: a filter on them matches nothing.
    preds += _query.patterns(req, "partition_key", lambda v: None)
    if dto.query_str(req, "consuming_asset_pattern") not in (None, "~"):
        preds.append(lambda v: False)
    if dto.query_str(req, "partition_date_gte") or dto.query_str(req, "partition_date_lte"):
        if dto.is_wildcard(req.context.get("dag_id_param", "")):
            raise problem.bad_request("partition_date_gte and partition_date_lte require a specific dag_id.")
        raise problem.bad_request("partition_date_gte and partition_date_lte are not supported: "
                                  "Leoflow has no partitioned DAGs")
    return preds


def _shape(versions: Versions) -> Callable[[Item], dict[str, Any]]:
    return lambda v: _runs.run_response(v.record, versions)


# ---------------------------------------------------------------------------------------------


class DagRunCollection:
    roles = {"GET": Role.VIEWER, "POST": Role.USER, "PATCH": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        if not dto.is_wildcard(dag_id):
            _runs.require_dag_entry(self.ctx, dag_id)
        req.context.dag_id_param = dag_id
        preds = _query_predicates(req)
        versions = Versions(self.ctx)
        resp.media = _query.listing(
            req, _all_runs(self.ctx, dag_id, req), preds, SORTING, "dag_runs", _shape(versions),
            cursor_allowed=True,
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        body = _bodies.parse(req, _bodies.TriggerDAGRunPostBody)
        if (body.data_interval_start is None) != (body.data_interval_end is None):
            raise problem.invalid(
                "body.data_interval_start",
                "Either both data_interval_start and data_interval_end must be provided or both must be None",
            )
        if dto.is_wildcard(dag_id):
            raise problem.bad_request("a DAG must be named to trigger a run ('~' is not allowed here)")
        dag, version = _runs.require_latest_dag(self.ctx, dag_id)
        entry = _runs.require_dag_entry(self.ctx, dag_id)
        if getattr(entry.state, "is_stale", False):
            raise problem.not_found(f"Dag with dag_id: '{dag_id}' not found (it is no longer in the DAG bundle)")
        conf = body.conf if body.conf is not None else {}
        try:
            resolve_params(dag, conf)
        except ParamsError as exc:
            first = exc.issues[0]
            raise problem.Problem(
                400, str(exc), type_="invalid-params", field=f"body.conf.{first.field}",
                extra={"errors": [{"loc": ["body", "conf", *i.field.split(".")], "msg": i.message,
                                   "type": "param_error"} for i in exc.issues]},
            ) from None
        now = self.ctx.clock()
        run_after = body.run_after or now
        logical_date = body.logical_date
        start = end = None
        if logical_date is not None:
            if body.data_interval_start is not None and body.data_interval_end is not None:
                start, end = body.data_interval_start, body.data_interval_end
            else:
                interval = timetable.infer_manual_data_interval(dag, logical_date)
                start, end = interval.start, interval.end
        if body.dag_run_id is not None:
            if body.dag_run_id.strip(".") == "" and body.dag_run_id:
                raise problem.bad_request(
                    f"The run_id provided {body.dag_run_id!r} is not allowed: a run id must not be '.', '..' or "
                    "only dots",
                    field="body.dag_run_id",
                )
            if not body.dag_run_id or not RUN_ID_PATTERN.match(body.dag_run_id) or len(body.dag_run_id) > 250:
                raise problem.bad_request(
                    f"The run_id provided '{body.dag_run_id}' does not match regex pattern "
                    f"'{RUN_ID_PATTERN.pattern}' (at most 250 characters)",
                    field="body.dag_run_id",
                )
            run_id = body.dag_run_id
        else:
            run_id = timetable.generate_run_id(DagRunType.MANUAL, run_after)
        run = DagRun(
            dag_id=dag_id,
            run_id=run_id,
            run_type=DagRunType.MANUAL,
            state=DagRunState.QUEUED,
            run_after=run_after,
            dag_version_number=version.version_number,
            bundle_version=version.bundle_version,
            logical_date=logical_date,
            data_interval_start=start,
            data_interval_end=end,
            queued_at=now,
            conf=conf,
            note=body.note or None,
            triggered_by="ui" if req.get_header("Referer") else "rest_api",
            triggering_user_name=_runs.user_name(req),
        )
        try:
            created = self.ctx.repos.runs.create(run, planning.new_task_instances(dag, run))
        except AlreadyExists:
            raise problem.conflict(
                f"A DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` already exists"
            ) from None
        _runs.audit(self.ctx, req, "trigger_dag_run", dag_id=dag_id, run_id=run_id, logical_date=logical_date,
                    extra={"conf": conf, "note": body.note})
        resp.media = _runs.run_response(created.record, Versions(self.ctx))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        """Bulk update/delete of runs (``BulkBody_BulkDAGRunBody_``)."""
        body = _bodies.parse(req, _bodies.BulkDagRuns)
        out: dict[str, Any] = {}
        for action in body.actions:  # type: ignore[attr-defined]
            result = out.setdefault(action.action, {"success": [], "errors": []})
            if action.action == "create":
                result["errors"].append({"error": "Creating DAG runs in bulk is not supported; trigger them with "
                                                  "POST /api/v2/dags/{dag_id}/dagRuns", "status_code": 405})
                continue
            for entity in action.entities:
                run_id = entity if isinstance(entity, str) else entity.dag_run_id
                run_dag = dag_id if isinstance(entity, str) or not entity.dag_id else entity.dag_id
                if dto.is_wildcard(run_dag):
                    result["errors"].append({"error": f"dag_run_id {run_id!r}: a concrete dag_id is required",
                                             "status_code": 400})
                    continue
                try:
                    if action.action == "delete":
                        if self.ctx.repos.runs.get(run_dag, run_id) is None:
                            if action.action_on_non_existence == "skip":
                                continue
                            raise problem.not_found(f"The DagRun with dag_id: `{run_dag}` and run_id: `{run_id}` "
                                                    "was not found")
                        delete_run(self.ctx, req, run_dag, run_id)
                    else:
                        missing = self.ctx.repos.runs.get(run_dag, run_id) is None
                        if missing and action.action_on_non_existence == "skip":
                            continue
                        fields = entity.model_fields_set - {"dag_run_id", "dag_id"}
                        if action.update_mask:
                            fields &= set(action.update_mask)
                        patch_run(self.ctx, req, run_dag, run_id, entity, fields)
                    result["success"].append(run_id)
                except falcon.HTTPError as exc:
                    result["errors"].append({"error": exc.description or exc.title, "status_code": exc.status_code})
        resp.media = {k: out.get(k) for k in ("create", "update", "delete")}


def delete_run(ctx: Any, req: falcon.Request, dag_id: str, run_id: str) -> None:
    run = _runs.require_run(ctx, dag_id, run_id).record
    if str(run.state) not in MUTABLE_STATES:
        raise problem.conflict(
            f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` cannot be deleted in {run.state} state"
        )
    if not ctx.repos.runs.delete(dag_id, run_id):
        raise problem.not_found(f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found")
    _runs.audit(ctx, req, "delete_dag_run", dag_id=dag_id, run_id=run_id, logical_date=run.logical_date)


def patch_run(ctx: Any, req: falcon.Request, dag_id: str, run_id: str, body: Any, fields: set[str]) -> DagRun:
    """Apply ``state`` and/or ``note`` (only the fields sent; ``note: null`` clears the note)."""

    def attempt() -> DagRun:
        current = _runs.require_run(ctx, dag_id, run_id)
        run = current.record
        if "state" in fields and body.state is not None and str(run.state) != body.state:
            dag = _runs.dag_for_run(ctx, run)
            scope = _apply.load_scope(ctx, [current], for_write=True)
            current = scope.runs[(dag_id, run_id)]
            try:
                result = actions.set_run_state(dag, current.record, scope.ti_records(),
                                               state=DagRunState(body.state), now=ctx.clock())
            except actions.ActionError as exc:
                raise problem.bad_request(str(exc), field="body.state") from None
            _apply.apply(ctx, scope, result)
            current = _runs.require_run(ctx, dag_id, run_id)
        if "note" in fields and current.record.note != body.note:
            current = ctx.repos.runs.update(current, dataclasses.replace(current.record, note=body.note))
        return current.record  # type: ignore[no-any-return]

    updated = _runs.with_cas_retry(attempt, f"run {run_id!r} of DAG {dag_id!r}")
    _runs.audit(ctx, req, "patch_dag_run", dag_id=dag_id, run_id=run_id, logical_date=updated.logical_date,
                extra={k: getattr(body, k) for k in sorted(fields)})
    return updated


class DagRunItem:
    roles = {"GET": Role.VIEWER, "PATCH": Role.USER, "DELETE": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        run = _runs.peek_run(self.ctx, dag_id, dag_run_id).record
        resp.media = _runs.run_response(run, Versions(self.ctx))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        body = _bodies.parse(req, _bodies.DAGRunPatchBody)
        mask = dto.update_mask(req, {"state", "note"})
        fields = _bodies.fields_set(body) if mask is None else mask
        _runs.require_run(self.ctx, dag_id, dag_run_id)
        if "state" in fields and body.state is None:
            raise problem.invalid("body.state", "state cannot be null; use queued, success or failed")
        updated = patch_run(self.ctx, req, dag_id, dag_run_id, body, fields)
        resp.media = _runs.run_response(updated, Versions(self.ctx))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        delete_run(self.ctx, req, dag_id, dag_run_id)
        resp.status = falcon.HTTP_204


def clear_run(
    ctx: Any,
    req: falcon.Request,
    dag_id: str,
    run_id: str,
    *,
    dry_run: bool,
    only_failed: bool,
    only_new: bool,
    run_on_latest_version: bool | None,
    note: str | None,
    note_set: bool,
) -> tuple[DagRun, list[TaskInstance]]:
    """Clear one run (every task, or only failed / only tasks new in the latest version)."""

    def attempt() -> tuple[DagRun, list[TaskInstance]]:
        current = _runs.require_run(ctx, dag_id, run_id)
        latest_dag, latest = _runs.require_latest_dag(ctx, dag_id)
        use_latest = bool(run_on_latest_version)
        dag = latest_dag if use_latest else _runs.dag_for_run(ctx, current.record)
        scope = _apply.load_scope(ctx, [current], for_write=not dry_run)
        current = scope.runs[(dag_id, run_id)]
        existing = {t.task_id for t in scope.ti_records()}
        if only_new:
            missing = [t for t in planning.new_task_instances(latest_dag, dataclasses.replace(
                current.record, dag_version_number=latest.version_number)) if t.task_id not in existing]
            if dry_run:
                return current.record, missing
            if missing:
                ctx.repos.task_instances.create_many(missing)
            run = current.record
            if run.state.finished:
                queued = dataclasses.replace(run, state=DagRunState.QUEUED, start_date=None, end_date=None,
                                             queued_at=ctx.clock(), clear_number=run.clear_number + 1,
                                             dag_version_number=latest.version_number)
                current = ctx.repos.runs.update(current, queued)
            return current.record, missing
        try:
            result = actions.clear(
                dag, [current.record], scope.ti_records(), now=ctx.clock(), task_ids=None,
                only_failed=only_failed,
                dag_version_number=latest.version_number if use_latest else None,
            )
        except actions.ActionError as exc:
            raise problem.bad_request(str(exc)) from None
        if dry_run:
            return current.record, list(result.previous)
        _apply.apply(ctx, scope, result)
        fresh = _runs.require_run(ctx, dag_id, run_id)
        if note_set and fresh.record.note != note:
            fresh = ctx.repos.runs.update(fresh, dataclasses.replace(fresh.record, note=note))
        return fresh.record, list(result.task_instances)

    run, tis = _runs.with_cas_retry(attempt, f"clear run {run_id!r} of DAG {dag_id!r}")
    if not dry_run:
        _runs.audit(ctx, req, "clear_dag_run", dag_id=dag_id, run_id=run_id, logical_date=run.logical_date,
                    extra={"only_failed": only_failed, "only_new": only_new,
                           "run_on_latest_version": run_on_latest_version, "cleared": len(tis)})
    return run, tis


class DagRunClear:
    roles = {"POST": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        body = _bodies.parse(req, _bodies.DAGRunClearBody)
        run, tis = clear_run(
            self.ctx, req, dag_id, dag_run_id, dry_run=body.dry_run, only_failed=body.only_failed,
            only_new=body.only_new, run_on_latest_version=body.run_on_latest_version, note=body.note,
            note_set="note" in body.model_fields_set,
        )
        versions = Versions(self.ctx)
        if body.dry_run:
            resp.media = {"task_instances": [_runs.ti_response(t, run, versions) for t in tis],
                          "total_entries": len(tis)}
        else:
            resp.media = _runs.run_response(run, versions)


class ClearDagRuns:
    """``POST /dags/{dag_id}/clearDagRuns``: clear several runs (``dag_runs`` list; no partitions)."""

    roles = {"POST": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        data = _bodies.read(req)
        if isinstance(data, dict) and any(k in data for k in ("partition_key", "partition_date_start",
                                                             "partition_date_end")):
            raise problem.not_implemented("partitioned DAG runs")
        body = _bodies.validate(_bodies.BulkDAGRunClearBody, data)
        if not body.dag_runs:
            raise problem.invalid("body.dag_runs", "at least one dag run must be given")
        targets: dict[tuple[str, str], None] = {}
        for entry in body.dag_runs:
            if dto.is_wildcard(dag_id):
                if not entry.dag_id or dto.is_wildcard(entry.dag_id):
                    raise problem.bad_request(
                        "When the URL dag_id is '~', every entry must provide a concrete dag_id "
                        f"(missing on dag_run_id: {entry.dag_run_id!r})."
                    )
                targets[(entry.dag_id, entry.dag_run_id)] = None
            else:
                if (entry.dag_id or dag_id) != dag_id:
                    raise problem.bad_request(
                        f"Entry dag_id {entry.dag_id!r} does not match the URL dag_id {dag_id!r}."
                    )
                targets[(dag_id, entry.dag_run_id)] = None
        for d, r in targets:
            _runs.require_run(self.ctx, d, r)
        versions = Versions(self.ctx)
        affected: list[dict[str, Any]] = []
        cleared: list[dict[str, Any]] = []
        for d, r in targets:
            run, tis = clear_run(self.ctx, req, d, r, dry_run=body.dry_run, only_failed=body.only_failed,
                                 only_new=body.only_new, run_on_latest_version=body.run_on_latest_version,
                                 note=body.note, note_set="note" in body.model_fields_set)
            if body.dry_run:
                affected.extend(_runs.ti_response(t, run, versions) for t in tis)
            else:
                cleared.append(_runs.run_response(run, versions))
        if body.dry_run:
            resp.media = {"task_instances": affected, "total_entries": len(affected)}
        else:
            resp.media = {"dag_runs": cleared, "total_entries": len(cleared)}


class DagRunBatchList:
    """``POST /dags/~/dagRuns/list``: the list endpoint with filters in a JSON body."""

    roles = {"POST": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        if not dto.is_wildcard(dag_id):
            raise problem.invalid("path.dag_id", "Input should be '~': the batch list works across all DAGs")
        body = _bodies.parse(req, _bodies.DAGRunsBatchBody)
        raw = body.model_dump()
        r: Callable[[Item], DagRun] = lambda v: v.record  # noqa: E731
        preds: list[Callable[[Item], bool]] = []
        for name in ("run_after", "logical_date", "start_date", "end_date"):
            preds += _query.body_ranges(raw, name, lambda v, n=name: getattr(r(v), n))
        preds += _query.body_ranges(raw, "duration", lambda v: _duration(r(v)))
        if body.dag_ids:
            preds += _query.any_of(body.dag_ids, lambda v: r(v).dag_id)
        if body.states:
            preds += _query.any_of(body.states, lambda v: str(r(v).state))
        if body.conf_contains:
            needle = body.conf_contains
            preds.append(lambda v: needle in json.dumps(dict(r(v).conf), default=str))
        versions = Versions(self.ctx)
        resp.media = _query.listing(
            req, _all_runs(self.ctx, "~"), preds, SORTING, "dag_runs", _shape(versions),
            order_by=[body.order_by] if body.order_by else [],
            limit=min(body.page_limit or dto.DEFAULT_LIMIT, dto._max_limit(req)), offset=body.page_offset,
        )


class DagRunWait:
    """Experimental ``…/wait``: NDJSON lines with the run's state until it finishes (bounded)."""

    roles = {"GET": Role.VIEWER}
    MAX_WAIT_SECONDS = 300.0

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str) -> None:
        interval = dto.query_float(req, "interval")
        if interval is None:
            raise problem.invalid("query.interval", "Field required")
        if interval <= 0:
            raise problem.invalid("query.interval", "Input should be greater than 0")
        result_tasks = dto.query_list(req, "result")
        _runs.require_run(self.ctx, dag_id, dag_run_id)
        resp.content_type = "application/x-ndjson"
        resp.stream = self._lines(dag_id, dag_run_id, interval, result_tasks)

    def _lines(self, dag_id: str, run_id: str, interval: float, result_tasks: list[str]) -> Iterator[bytes]:
        deadline = time.monotonic() + self.MAX_WAIT_SECONDS
        while True:
            found = self.ctx.repos.runs.get(dag_id, run_id)
            if found is None:
                yield (json.dumps({"state": None, "detail": "the run was deleted"}) + "\n").encode()
                return
            run = found.record
            line: dict[str, Any] = {"state": str(run.state)}
            if run.state.finished:
                if result_tasks:
                    from leoflow.store.repos.base import TIKey

                    line["results"] = {
                        t: getattr(self.ctx.repos.xcom.get(TIKey(dag_id, run_id, t, -1)), "value", None)
                        for t in result_tasks
                    }
                yield (json.dumps(line, default=str) + "\n").encode()
                return
            yield (json.dumps(line) + "\n").encode()
            if time.monotonic() + interval > deadline:
                return
            time.sleep(interval)


def register(app: falcon.App, ctx: Any) -> None:
    app.add_route("/api/v2/dags/{dag_id}/dagRuns", DagRunCollection(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/list", DagRunBatchList(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", DagRunItem(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear", DagRunClear(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait", DagRunWait(ctx))
    app.add_route("/api/v2/dags/{dag_id}/clearDagRuns", ClearDagRuns(ctx))


__all__ = ["Conflict", "register"]
