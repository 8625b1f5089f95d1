"""``/api/v2/dags``: list (with Airflow's filters), bulk pause, get, details, pause, delete.

Reads come from ``repos.dags.list()`` (one prefix list: every DAG's state, latest version and
summary) plus, only when a filter or ordering needs run facts, the run projection
(``repos.runs.latest`` / ``list``; in-process, no store request). Writes go through the DAG
repository's compare-and-set and are recorded in the event log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon

from leoflow.api import audit, dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.middleware import current_user
from leoflow.api.public import _dagshape as shape
from leoflow.domain.states import DagRunState
from leoflow.store.repos.dags import DagEntry
from leoflow.store.repos.errors import NotFound
from leoflow.store.repos.query import RunQuery

PATCH_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["is_paused"],
    "properties": {"is_paused": {"type": "boolean"}},
}
RUN_STATES = tuple(s.value for s in DagRunState)
ORDER_FIELDS = ("dag_id", "dag_display_name", "next_dagrun", "last_run_state", "last_run_start_date",
                "is_paused", "bundle_name")
TIMETABLES = {
    "cron": "airflow.timetables.trigger.CronTriggerTimetable",
    "preset": "airflow.timetables.trigger.CronTriggerTimetable",
    "duration": "airflow.timetables.trigger.DeltaTriggerTimetable",
    "once": "airflow.timetables.simple.OnceTimetable",
    "none": "airflow.timetables.simple.NullTimetable",
}

Pred = Callable[[DagEntry], bool]


def _enum(req: falcon.Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    values = dto.query_list(req, name)
    for value in values:
        if value not in allowed:
            raise problem.invalid(f"query.{name}", f"Input should be one of {', '.join(allowed)}; got {value!r}")
    return values


def _timetable_type(entry: DagEntry) -> str:
    from leoflow.domain.schedule import ScheduleError, parse_schedule

    try:
        kind = parse_schedule(entry.summary.schedule if entry.summary else None).kind
    except ScheduleError:
        kind = "none"
    return TIMETABLES[kind]


class DagFilter:
    """The DAG-list filters shared by GET and the bulk PATCH (PATCH accepts a subset)."""

    def __init__(self, ctx: AppContext, req: falcon.Request, *, bulk: bool = False) -> None:
        self.ctx = ctx
        self.preds: list[Pred] = []
        self.needs_runs = False
        self._latest: dict[str, Any] | None = None
        tags = dto.query_list(req, "tags")
        mode = dto.query_str(req, "tags_match_mode") or "any"
        if mode not in ("any", "all"):
            raise problem.invalid("query.tags_match_mode", f"Input should be 'any' or 'all'; got {mode!r}")
        if tags:
            wanted = set(tags)
            if mode == "all":
                self.preds.append(lambda e: wanted <= set(e.summary.tags if e.summary else ()))
            else:
                self.preds.append(lambda e: bool(wanted & set(e.summary.tags if e.summary else ())))
        owners = set(dto.query_list(req, "owners"))
        if owners:
            self.preds.append(lambda e: bool(owners & set(e.summary.owners if e.summary else ())))
        for name in ("dag_id", "dag_display_name"):
            for matcher in (dto.pattern_matcher(dto.query_str(req, f"{name}_pattern")),
                            dto.prefix_matcher(dto.query_str(req, f"{name}_prefix_pattern"))):
                if matcher is not None:
                    self.preds.append(lambda e, m=matcher: m(e.state.dag_id))
        if dto.query_bool(req, "exclude_stale", default=True):
            self.preds.append(lambda e: not e.state.is_stale)
        paused = dto.query_bool(req, "paused")
        if paused is not None:
            self.preds.append(lambda e: e.state.is_paused == paused)
        if bulk:
            return
        has_errors = dto.query_bool(req, "has_import_errors")
        if has_errors is not None:
            failing = shape.import_error_files(ctx)
            self.preds.append(lambda e: shape.entry_has_import_error(e, failing) == has_errors)
        for name, get in (("bundle_name", lambda e: e.state.bundle_name or (e.latest.bundle_name if e.latest else "")),
                          ("bundle_version", lambda e: e.latest.bundle_version if e.latest else None)):
            value = dto.query_str(req, name)
            if value is not None:
                self.preds.append(lambda e, v=value, g=get: g(e) == v)
        # Leoflow has no asset schedules yet: asking for them selects nothing.
        if dto.query_bool(req, "has_asset_schedule") or dto.query_str(req, "asset_dependency"):
            self.preds.append(lambda e: False)
        favorite = dto.query_bool(req, "is_favorite")
        if favorite is not None:
            mine = ctx.repos.favorites.for_user(current_user(req).username)
            self.preds.append(lambda e: (e.state.dag_id in mine) == favorite)
        timetables = dto.query_list(req, "timetable_type")
        if timetables:
            wanted_tt = set(timetables)
            self.preds.append(lambda e: (t := _timetable_type(e)) in wanted_tt or t.rsplit(".", 1)[-1] in wanted_tt)
        last_states = _enum(req, "last_dag_run_state", RUN_STATES)
        if last_states:
            self.needs_runs = True
            wanted_last = set(last_states)
            self.preds.append(lambda e: (r := self.latest_run(e.state.dag_id)) is not None
                              and str(r.state) in wanted_last)
        run_states = set(_enum(req, "dag_run_state", RUN_STATES))
        start = dto.datetime_range(req, "dag_run_start_date")
        end = dto.datetime_range(req, "dag_run_end_date")
        if run_states or not start.empty or not end.empty:
            runs = ctx.repos.runs.list(RunQuery(where=lambda r: (not run_states or str(r.state) in run_states)
                                                and start.contains(r.start_date) and end.contains(r.end_date)))
            with_runs = {v.record.dag_id for v in runs.items}
            self.preds.append(lambda e: e.state.dag_id in with_runs)

    def latest_run(self, dag_id: str) -> Any:
        if self._latest is None:
            self._latest = {k: (v[0].record if v else None) for k, v in self.ctx.repos.runs.latest(n=1).items()}
        return self._latest.get(dag_id)

    def apply(self, entries: list[DagEntry]) -> list[DagEntry]:
        rows = entries
        for pred in self.preds:  # one pass per filter: no per-row generator (1,000 rows per request)
            rows = [e for e in rows if pred(e)]
        return rows if rows is not entries else list(entries)


def _sort(flt: DagFilter, req: falcon.Request, entries: list[DagEntry]) -> list[DagEntry]:
    orders = dto.order_by(req, ORDER_FIELDS, "dag_id")
    if len(orders) == 1 and orders[0].field in ("dag_id", "dag_display_name"):
        # The common case (the UI's default): ids are unique non-null strings, so a plain key sort
        # gives dto.sort_rows' order; the entries arrive nearly sorted, which timsort does in O(n).
        return sorted(entries, key=_dag_id, reverse=orders[0].descending)
    keys: dict[str, Callable[[DagEntry], Any]] = {
        "dag_id": lambda e: e.state.dag_id,
        "dag_display_name": lambda e: e.state.dag_id,
        "next_dagrun": lambda e: e.state.next_dagrun_logical_date,
        "last_run_state": lambda e: (r := flt.latest_run(e.state.dag_id)) and str(r.state),
        "last_run_start_date": lambda e: (r := flt.latest_run(e.state.dag_id)) and r.start_date,
        "is_paused": lambda e: e.state.is_paused,
        "bundle_name": lambda e: e.state.bundle_name,
    }
    if orders[-1].field != "dag_id":
        orders = [*orders, dto.Order("dag_id", False)]  # stable pages
    return dto.sort_rows(entries, orders, keys)


def _dag_id(entry: DagEntry) -> str:
    return entry.state.dag_id


def _collection(ctx: AppContext, entries: list[DagEntry], total: int) -> dict[str, Any]:
    failing = shape.import_error_files(ctx)
    dags = [shape.dag_response(e, has_import_errors=shape.entry_has_import_error(e, failing)) for e in entries]
    return dto.collection("dags", dags, total)


# The JSON of one DAG as listed, per entry object. Entries are immutable and the DAG repository's
# projection hands out the same object until the DAG changes, so a list page is a join of cached
# strings (no shaping, no encoding per request). Bounded: cleared when it outgrows a few pages' worth.
_ROWS: dict[tuple[int, bool], tuple[DagEntry, str]] = {}
_ROWS_MAX = 8192
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # as the app's JSON handler


def _row_json(entry: DagEntry, has_import_errors: bool) -> str:
    key = (id(entry), has_import_errors)
    hit = _ROWS.get(key)
    if hit is not None and hit[0] is entry:
        return hit[1]
    text = _encode(shape.dag_response(entry, has_import_errors=has_import_errors))
    if len(_ROWS) >= _ROWS_MAX:
        _ROWS.clear()
    _ROWS[key] = (entry, text)  # holding the entry keeps its id() from being reused meanwhile
    return text


def _collection_json(ctx: AppContext, entries: list[DagEntry], total: int) -> str:
    """``_collection`` as JSON text, byte for byte what the JSON handler would write for it."""
    failing = shape.import_error_files(ctx)
    rows = ",".join(_row_json(e, shape.entry_has_import_error(e, failing)) for e in entries)
    return f'{{"dags":[{rows}],"total_entries":{int(total)}}}'


class DagCollection:
    roles = {"GET": Role.VIEWER, "PATCH": Role.USER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        flt = DagFilter(self.ctx, req)
        matched = _sort(flt, req, flt.apply(self.ctx.repos.dags.list()))
        resp.content_type = falcon.MEDIA_JSON
        resp.text = _collection_json(self.ctx, page.slice(matched), len(matched))

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = dto.json_body(req, PATCH_BODY)
        dto.update_mask(req, ("is_paused",))
        page = dto.page(req)
        flt = DagFilter(self.ctx, req, bulk=True)
        matched = page.slice(dto.sort_rows(flt.apply(self.ctx.repos.dags.list()), [dto.Order("dag_id", False)],
                                           {"dag_id": lambda e: e.state.dag_id}))
        paused = body["is_paused"]
        updated: list[DagEntry] = []
        for entry in matched:
            try:
                self.ctx.repos.dags.set_paused(entry.state.dag_id, paused)
            except NotFound:
                continue  # deleted meanwhile: not part of the answer
            audit.record(req, "patch_dags", dag_id=entry.state.dag_id, extra={"is_paused": paused})
            fresh = self.ctx.repos.dags.get(entry.state.dag_id)
            if fresh is not None:
                updated.append(fresh)
        resp.media = _collection(self.ctx, updated, len(updated))


class DagItem:
    roles = {"GET": Role.VIEWER, "PATCH": Role.USER, "DELETE": Role.USER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        entry = shape.require_entry(self.ctx, dag_id)
        failing = shape.import_error_files(self.ctx)
        resp.media = shape.dag_response(entry, has_import_errors=shape.entry_has_import_error(entry, failing))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        shape.require_entry(self.ctx, dag_id)
        body = dto.json_body(req, PATCH_BODY)
        dto.update_mask(req, ("is_paused",))
        try:
            self.ctx.repos.dags.set_paused(dag_id, body["is_paused"])
        except NotFound:
            raise problem.not_found(f"The Dag with ID: `{dag_id}` was not found") from None
        audit.record(req, "patch_dag", dag_id=dag_id, extra={"is_paused": body["is_paused"]})
        self.on_get(req, resp, dag_id)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        """Airflow's delete_dag: 409 while a run is active, else the runs (TIs, tries, XCom) and then
        the DAG (versions, blobs, favorites). A DAG whose file still exists is parsed again on the
        next sync and comes back as a new DAG (ADR 0014). Import errors stay: they describe a file,
        which Leoflow parses again only when it changes."""
        if self.ctx.repos.dags.get(dag_id) is None:
            raise problem.not_found(f"Dag with id: {dag_id} was not found")
        runs = self.ctx.repos.runs.for_dag(dag_id)
        busy = [v.record.run_id for v in runs if str(v.record.state) in ("queued", "running")]
        if busy:
            raise problem.conflict(f"Task instances of dag with id: '{dag_id}' are still running "
                                   f"(active runs: {', '.join(busy[:5])}); stop or finish them first")
        for v in runs:
            self.ctx.repos.runs.delete(dag_id, v.record.run_id)
        if not self.ctx.repos.dags.delete(dag_id):
            raise problem.not_found(f"Dag with id: {dag_id} was not found")  # deleted meanwhile
        late = self.ctx.repos.runs.for_dag(dag_id)  # created while we deleted (the scheduler is elsewhere)
        for v in late:
            self.ctx.repos.runs.delete(dag_id, v.record.run_id)
        audit.record(req, "delete_dag", dag_id=dag_id, extra={"runs_deleted": len(runs) + len(late)})
        resp.status = falcon.HTTP_200
        resp.media = None


class DagDetails:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        entry = shape.require_entry(self.ctx, dag_id)
        dag = shape.require_dag(self.ctx, dag_id)
        counts = self.ctx.repos.runs.counts_by_state([dag_id]).get(dag_id, {})
        active = sum(n for s, n in counts.items() if str(s) in ("queued", "running"))
        failing = shape.import_error_files(self.ctx)
        favorite = dag_id in self.ctx.repos.favorites.for_user(current_user(req).username)
        resp.media = shape.dag_details(entry, dag, has_import_errors=shape.entry_has_import_error(entry, failing),
                                       active_runs=active, is_favorite=favorite)


class DagFavorite:
    """Per-user favorites (the home page's "Favorite Dags"); any signed-in user manages their own."""

    roles = {"POST": Role.VIEWER}

    def __init__(self, ctx: AppContext, *, add: bool) -> None:
        self.ctx = ctx
        self.add = add

    def on_post(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        shape.require_entry(self.ctx, dag_id)
        user = current_user(req).username
        if self.add:
            self.ctx.repos.favorites.add(user, dag_id)
        else:
            self.ctx.repos.favorites.remove(user, dag_id)
        audit.record(req, "favorite_dag" if self.add else "unfavorite_dag", dag_id=dag_id)
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/dags", DagCollection(ctx))
    app.add_route("/api/v2/dags/{dag_id}", DagItem(ctx))
    app.add_route("/api/v2/dags/{dag_id}/details", DagDetails(ctx))
    app.add_route("/api/v2/dags/{dag_id}/favorite", DagFavorite(ctx, add=True))
    app.add_route("/api/v2/dags/{dag_id}/unfavorite", DagFavorite(ctx, add=False))
