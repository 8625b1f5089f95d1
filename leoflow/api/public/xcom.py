"""XCom entries: list (``~`` for DAG, run and task), get (native, ``deserialize``, ``stringify``), add, patch, delete.

Values are JSON (a task's return file, or what a user adds here); ``value`` comes back as stored.
With ``stringify=true`` it is the value's string form, as Airflow's ``XComResponseString``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies, _query, _runs
from leoflow.domain.records import DagRun, XComEntry
from leoflow.store.repos.base import TIKey, Versioned
from leoflow.store.repos.errors import StaleTry
from leoflow.store.repos.query import RunQuery


def _response(x: XComEntry, run: DagRun | None, *, value: bool, stringify: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "key": x.key,
        "timestamp": dto.iso(x.timestamp),
        "logical_date": dto.iso(run.logical_date) if run else None,
        "map_index": x.map_index,
        "task_id": x.task_id,
        "dag_id": x.dag_id,
        "run_id": x.run_id,
        "dag_display_name": x.dag_id,
        "task_display_name": x.task_id,
        "run_after": dto.iso(run.run_after) if run else dto.iso(x.timestamp),
    }
    if value:
        doc["value"] = (None if x.value is None else str(x.value)) if stringify else x.value
    return doc


SORTING: _query.Sorting[tuple[XComEntry, DagRun | None]] = _query.Sorting(
    keys={
        "key": lambda p: p[0].key,
        "dag_id": lambda p: p[0].dag_id,
        "run_id": lambda p: p[0].run_id,
        "task_id": lambda p: p[0].task_id,
        "map_index": lambda p: p[0].map_index,
        "timestamp": lambda p: p[0].timestamp,
        "run_after": lambda p: p[1].run_after if p[1] else None,
        "_default": lambda p: (p[0].dag_id, p[0].task_id, p[0].run_id, p[0].map_index, p[0].key),
    },
    default="_default",
    primary_key="_default",
)


class XComCollection:
    roles = {"GET": Role.VIEWER, "POST": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str) -> None:
        wild = dto.is_wildcard
        if not wild(dag_run_id) and wild(dag_id):
            raise problem.bad_request("dag_id is required when dag_run_id is specified")
        if "_default" in dto.query_list(req, "order_by"):
            raise problem.bad_request("Ordering with '_default' is disallowed", field="query.order_by")
        map_index = dto.query_int(req, "map_index", minimum=-1)
        page = self.ctx.repos.xcom.list(
            dag_id=None if wild(dag_id) else dag_id,
            run_id=None if wild(dag_run_id) else dag_run_id,
            task_id=None if wild(task_id) else task_id,
            map_index=map_index,
            key=dto.query_str(req, "xcom_key"),
        )
        dag_ids = sorted({x.dag_id for x in page.items})
        runs: dict[tuple[str, str], DagRun] = {}
        if dag_ids:
            for v in self.ctx.repos.runs.list(RunQuery(dag_ids=dag_ids, limit=None)).items:
                runs[(v.record.dag_id, v.record.run_id)] = v.record
        pairs = [(x, runs.get((x.dag_id, x.run_id))) for x in page.items]
        preds: list[Callable[[tuple[XComEntry, DagRun | None]], bool]] = []
        preds += _query.patterns(req, "xcom_key", lambda p: p[0].key)
        preds += _query.patterns(req, "dag_display_name", lambda p: p[0].dag_id)
        preds += _query.patterns(req, "run_id", lambda p: p[0].run_id)
        preds += _query.patterns(req, "task_id", lambda p: p[0].task_id)
        map_filter = dto.query_int(req, "map_index_filter", minimum=-1)
        if map_filter is not None:
            preds.append(lambda p: p[0].map_index == map_filter)
        preds += _query.datetime_ranges(req, "logical_date", lambda p: p[1].logical_date if p[1] else None)
        preds += _query.datetime_ranges(req, "run_after", lambda p: p[1].run_after if p[1] else None)
        resp.media = _query.listing(
            req, pairs, preds, SORTING, "xcom_entries", lambda p: _response(p[0], p[1], value=False)
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str) -> None:
        body = _bodies.parse(req, _bodies.XComCreateBody)
        run = _require_task_and_run(self.ctx, dag_id, dag_run_id, task_id)
        key = TIKey(dag_id, dag_run_id, task_id, body.map_index)
        if self.ctx.repos.xcom.get(key, body.key) is not None:
            raise problem.conflict(f"The XCom with key: `{body.key}` with mentioned task instance already exists.")
        entry = _write(self.ctx, key, body.key, body.value)
        _runs.audit(self.ctx, req, "create_xcom_entry", dag_id=dag_id, run_id=dag_run_id, task_id=task_id,
                    map_index=body.map_index, extra={"key": body.key})
        resp.status = falcon.HTTP_201
        resp.media = _response(entry, run.record, value=True)


def _require_task_and_run(ctx: Any, dag_id: str, dag_run_id: str, task_id: str) -> Versioned[DagRun]:
    found = ctx.repos.runs.get(dag_id, dag_run_id)
    dag = _runs.dag_for_run(ctx, found.record) if found else _runs.dag_at(ctx, dag_id)
    if dag is None:
        raise problem.not_found(f"Dag with dag_id: '{dag_id}' not found")
    if task_id not in dag.tasks:
        raise problem.not_found(f"Task with ID: `{task_id}` not found in dag: `{dag_id}`")
    if found is None:
        raise problem.not_found(f"Dag Run with ID: `{dag_run_id}` not found for dag: `{dag_id}`")
    return found  # type: ignore[no-any-return]


def _write(ctx: Any, key: TIKey, xcom_key: str, value: Any) -> XComEntry:
    ti = ctx.repos.task_instances.get(TIKey(key.dag_id, key.run_id, key.task_id, key.map_index))
    try_number = ti.record.try_number if ti is not None else 0
    try:
        return ctx.repos.xcom.set(key, xcom_key, value, try_number=try_number, timestamp=ctx.clock())  # type: ignore[no-any-return]
    except StaleTry as exc:
        raise problem.conflict(str(exc)) from None
    except ValueError as exc:
        raise problem.bad_request(f"Couldn't serialise the XCom with key: `{xcom_key}`: {exc}",
                                  field="body.value") from None


class XComItem:
    roles = {"GET": Role.VIEWER, "PATCH": Role.USER, "DELETE": Role.USER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
               xcom_key: str) -> None:
        map_index = _query.map_index(req)
        dto.query_bool(req, "deserialize", default=False)  # values are JSON already: same either way
        stringify = bool(dto.query_bool(req, "stringify", default=False))
        entry = self.ctx.repos.xcom.get(TIKey(dag_id, dag_run_id, task_id, map_index), xcom_key)
        if entry is None:
            raise problem.not_found(f"XCom entry with key: `{xcom_key}` not found")
        run = self.ctx.repos.runs.get(dag_id, dag_run_id)
        resp.media = _response(entry, run.record if run else None, value=True, stringify=stringify)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
                 xcom_key: str) -> None:
        body = _bodies.parse(req, _bodies.XComUpdateBody)
        key = TIKey(dag_id, dag_run_id, task_id, body.map_index)
        if self.ctx.repos.xcom.get(key, xcom_key) is None:
            raise problem.not_found(
                f"The XCom with key: `{xcom_key}` with mentioned task instance doesn't exist."
            )
        run = _runs.require_run(self.ctx, dag_id, dag_run_id)
        entry = _write(self.ctx, key, xcom_key, body.value)
        _runs.audit(self.ctx, req, "update_xcom_entry", dag_id=dag_id, run_id=dag_run_id, task_id=task_id,
                    map_index=body.map_index, extra={"key": xcom_key})
        resp.media = _response(entry, run.record, value=True)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str,
                  xcom_key: str) -> None:
        map_index = _query.map_index(req)
        if not self.ctx.repos.xcom.delete(TIKey(dag_id, dag_run_id, task_id, map_index), xcom_key):
            raise problem.not_found(f"XCom entry with key: `{xcom_key}` not found")
        _runs.audit(self.ctx, req, "delete_xcom_entry", dag_id=dag_id, run_id=dag_run_id, task_id=task_id,
                    map_index=map_index, extra={"key": xcom_key})
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: Any) -> None:
    base = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries"
    app.add_route(base, XComCollection(ctx))
    app.add_route(base + "/{xcom_key}", XComItem(ctx))
