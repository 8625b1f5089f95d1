"""The DAG list (``/ui/dags``: DAGs with their latest runs) and ``/ui/dags/{dag_id}/latest_run``.

Filters, ordering and paging follow Airflow's ``get_dags_ui``. Every filter is evaluated on the
DAG entries (one prefix list) and the in-process run projection, so the list page costs a few
reads whatever the number of runs. ``is_favorite`` is per user (``repos.favorites``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.middleware import current_user
from leoflow.api.public import _dagshape
from leoflow.api.ui import _common

DEFAULT_RUNS_LIMIT = 10  # Airflow's ``dag_runs_limit`` default: latest runs shown per DAG row
ORDER_FIELDS = ("dag_id", "dag_display_name", "next_dagrun", "state", "start_date", "last_run_state",
                "last_run_start_date")
RUN_ORDER_FIELDS = ("state", "last_run_state", "last_run_start_date")  # orders that need every DAG's last run


def dag_fields(entry: Any, error_files: set[str]) -> dict[str, Any]:
    """The ``DAGResponse`` part of a row: the same document ``/api/v2/dags`` answers (Airflow's
    ``DAGWithLatestDagRunsResponse`` extends ``DAGResponse``), shaped in one place."""
    return _dagshape.dag_response(entry, has_import_errors=dag_fields_has_errors(entry, error_files))


Predicate = Callable[[Any], bool]


class DagsWithLatestRuns:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = current_user(req)
        pg = dto.page(req)
        runs_limit = dto.query_int(req, "dag_runs_limit", default=DEFAULT_RUNS_LIMIT, minimum=0)
        orders = dto.order_by(req, ORDER_FIELDS, "dag_id")
        repos = self.ctx.repos
        entries = [e for e in repos.dags.list() if e.latest is not None]
        # Latest runs of every DAG only when a filter or the order needs them; else of the page's DAGs.
        every_dag = bool(dto.query_list(req, "last_dag_run_state")) or any(o.field in RUN_ORDER_FIELDS for o in orders)
        dag_ids = [e.state.dag_id for e in entries] if every_dag else []
        latest_runs = repos.runs.latest(dag_ids, n=max(runs_limit, 1)) if dag_ids else {}
        favorites = repos.favorites.for_user(user.username)
        error_files = {e.filename for e in repos.dags.import_errors()}
        keep = self._filters(req, favorites, error_files, latest_runs)
        selected = entries
        for pred in keep:  # one pass per filter, no per-row generator
            selected = [e for e in selected if pred(e)]

        def last(e: Any) -> Any:
            runs = latest_runs.get(e.state.dag_id)
            return runs[0].record if runs else None

        keys: dict[str, Callable[[Any], Any]] = {
            "dag_id": lambda e: e.state.dag_id,
            "dag_display_name": lambda e: e.state.dag_id,
            "next_dagrun": lambda e: e.state.next_dagrun_logical_date,
            "state": lambda e: str(last(e).state) if last(e) else None,
            "last_run_state": lambda e: str(last(e).state) if last(e) else None,
            "start_date": lambda e: e.summary.start_date if e.summary else None,
            "last_run_start_date": lambda e: last(e).start_date if last(e) else None,
        }
        if len(orders) == 1 and orders[0].field in ("dag_id", "dag_display_name"):  # unique, never null
            ordered = sorted(selected, key=keys["dag_id"], reverse=orders[0].descending)
        else:
            ordered = dto.sort_rows(selected, orders, keys)
        shown = pg.slice(ordered)
        if not every_dag and shown:
            latest_runs = repos.runs.latest([e.state.dag_id for e in shown], n=max(runs_limit, 1))
        rows = []
        for e in shown:
            doc = _cached_json(e, dag_fields_has_errors(e, error_files), lambda e=e: dag_fields(e, error_files))
            runs = ",".join(_cached_json(v, False, lambda v=v: _common.light_run(v))
                            for v in latest_runs.get(e.state.dag_id, [])[:runs_limit])
            # the row as ``doc.update(asset_expression, latest_dag_runs, pending_actions, is_favorite)``;
            # no human-in-the-loop tasks in Leoflow: pending_actions is empty
            favorite = "true" if e.state.dag_id in favorites else "false"
            rows.append(f'{doc[:-1]},"asset_expression":null,"latest_dag_runs":[{runs}],"pending_actions":[],'
                        f'"is_favorite":{favorite}}}')
        resp.content_type = falcon.MEDIA_JSON
        resp.text = f'{{"total_entries":{len(selected)},"dags":[{",".join(rows)}]}}'

    def _filters(self, req: falcon.Request, favorites: set[str], error_files: set[str],
                 latest_runs: dict[str, list[Any]]) -> list[Predicate]:
        keep: list[Predicate] = []
        tags = set(dto.query_list(req, "tags"))
        mode = dto.query_str(req, "tags_match_mode") or "any"
        if mode not in ("any", "all"):
            raise problem.invalid("query.tags_match_mode", f"{mode!r} is not one of any, all")
        if tags:
            def has_tags(e: Any) -> bool:
                mine = set(e.summary.tags if e.summary else ())
                return tags <= mine if mode == "all" else bool(tags & mine)
            keep.append(has_tags)
        owners = set(dto.query_list(req, "owners"))
        if owners:
            keep.append(lambda e: bool(owners & set(e.summary.owners if e.summary else ())))
        dag_ids = set(dto.query_list(req, "dag_ids"))
        if dag_ids:
            keep.append(lambda e: e.state.dag_id in dag_ids)
        for name, make in (("dag_id_pattern", dto.pattern_matcher), ("dag_id_prefix_pattern", dto.prefix_matcher),
                           ("dag_display_name_pattern", dto.pattern_matcher),
                           ("dag_display_name_prefix_pattern", dto.prefix_matcher)):
            match = make(dto.query_str(req, name))
            if match is not None:
                keep.append(lambda e, m=match: m(e.state.dag_id))
        if dto.query_bool(req, "exclude_stale", default=True):
            keep.append(lambda e: not e.state.is_stale)
        paused = dto.query_bool(req, "paused")
        if paused is not None:
            keep.append(lambda e: e.state.is_paused == paused)
        has_errors = dto.query_bool(req, "has_import_errors")
        if has_errors is not None:
            keep.append(lambda e: dag_fields_has_errors(e, error_files) == has_errors)
        last_states = set(dto.query_list(req, "last_dag_run_state"))
        if last_states:
            keep.append(lambda e: bool(latest_runs.get(e.state.dag_id))
                        and str(latest_runs[e.state.dag_id][0].record.state) in last_states)
        any_states = set(dto.query_list(req, "dag_run_state"))
        if any_states:
            counts = self.ctx.repos.runs.counts_by_state()
            keep.append(lambda e: bool(any_states & set(counts.get(e.state.dag_id, {}))))
        bundle_name = dto.query_str(req, "bundle_name")
        if bundle_name is not None:
            keep.append(lambda e: e.latest is not None and e.latest.bundle_name == bundle_name)
        bundle_version = dto.query_str(req, "bundle_version")
        if bundle_version is not None:
            keep.append(lambda e: e.latest is not None and e.latest.bundle_version == bundle_version)
        favorite = dto.query_bool(req, "is_favorite")
        if favorite is not None:
            keep.append(lambda e: (e.state.dag_id in favorites) == favorite)
        # Leoflow has no asset schedules, asset dependencies or human-in-the-loop actions.
        if dto.query_bool(req, "has_asset_schedule"):
            keep.append(lambda e: False)
        if dto.query_str(req, "asset_dependency") is not None:
            keep.append(lambda e: False)
        if dto.query_bool(req, "has_pending_actions"):
            keep.append(lambda e: False)
        return keep


# JSON of a DAG's fields and of a light run, per (immutable) entry / run object: the projections hand
# out the same object until it changes, so a page joins cached strings instead of shaping and
# encoding 50 DAGs and 500 runs per request. Bounded: cleared when it outgrows a few pages' worth.
_JSON: dict[tuple[int, bool], tuple[Any, str]] = {}
_JSON_MAX = 16384
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # as the app's JSON handler


def _cached_json(obj: Any, variant: bool, shape: Callable[[], dict[str, Any]]) -> str:
    key = (id(obj), variant)
    hit = _JSON.get(key)
    if hit is not None and hit[0] is obj:
        return hit[1]
    text = _encode(shape())
    if len(_JSON) >= _JSON_MAX:
        _JSON.clear()
    _JSON[key] = (obj, text)  # holding the object keeps its id() from being reused meanwhile
    return text


def dag_fields_has_errors(entry: Any, error_files: set[str]) -> bool:
    fileloc = (entry.summary.fileloc if entry.summary else "") or (entry.latest.fileloc if entry.latest else "")
    return bool(fileloc) and fileloc in error_files


class LatestRun:
    """The newest run by ``run_after``; JSON ``null`` (200) when the DAG has none, as Airflow."""

    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        _common.require_dag(self.ctx, dag_id)
        runs = self.ctx.repos.runs.latest([dag_id], n=1).get(dag_id)
        resp.media = _common.light_run(runs[0]) if runs else None


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/dags", DagsWithLatestRuns(ctx))
    app.add_route("/ui/dags/{dag_id}/latest_run", LatestRun(ctx))

