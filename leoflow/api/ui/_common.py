"""What the ``/ui/*`` endpoints share: DAG lookups, run filters, task order, response pieces.

DAG versions, their parsed form and lookups go through ``leoflow.api.public._runs`` (the public
API's helpers), so a version's id, a run's ``dag_versions`` and a 404's wording are identical on
both APIs. Parsed DAG versions are immutable and cached there; the task order of a version is
cached here by the same key.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.public import _runs
from leoflow.domain.dag import DAG
from leoflow.domain.graph import edges_of, topological_order
from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.query import RunQuery

RUN_TYPES = frozenset(t.value for t in DagRunType) | {"operator_triggered", "asset_materialization"}
RUN_STATES = frozenset(s.value for s in DagRunState)
GRID_ORDER_FIELDS = ("run_after", "logical_date", "start_date", "end_date")


def require_dag(ctx: Any, dag_id: str) -> Any:
    """The DAG's entry, or Airflow's 404 ("Dag with id X was not found")."""
    if dto.is_wildcard(dag_id):
        raise problem.bad_request("`~` was supplied as dag_id, but querying multiple dags is not supported.",
                                  field="path.dag_id")
    entry = _runs.dag_entry(ctx, dag_id)
    if entry is None:
        raise problem.not_found(f"Dag with id {dag_id} was not found")
    return entry


def latest_number(entry: Any) -> int | None:
    return entry.latest.version_number if entry.latest is not None else None


def dag_version(ctx: Any, entry: Any, version_number: int | None) -> DAG:
    """The parsed DAG at ``version_number`` (latest when None), or a 404 naming the version."""
    dag_id = entry.state.dag_id
    number = version_number if version_number is not None else latest_number(entry)
    dag = _runs.dag_at(ctx, dag_id, number) if number else None
    if dag is None:
        if version_number is None:
            raise problem.not_found(f"Dag with id {dag_id} was not found")
        raise problem.not_found(f"Dag with id {dag_id} and version number {version_number} was not found")
    return dag


_ORDER_CACHE: OrderedDict[int, tuple[DAG, list[str]]] = OrderedDict()
_ORDER_LOCK = threading.Lock()


def task_order(dag: DAG) -> list[str]:
    """Topological order, ties by task id: Airflow's default ``grid_view_sorting_order``."""
    key = id(dag)
    with _ORDER_LOCK:
        hit = _ORDER_CACHE.get(key)
        if hit is not None and hit[0] is dag:
            return hit[1]
    order = topological_order(edges_of(dag))
    with _ORDER_LOCK:
        _ORDER_CACHE[key] = (dag, order)  # holding the DAG keeps id() from being reused meanwhile
        while len(_ORDER_CACHE) > 512:
            _ORDER_CACHE.popitem(last=False)
    return order


def subset(dag: DAG, root: str | None, upstream: bool, downstream: bool, depth: int | None) -> list[str]:
    """Airflow's ``partial_subset``: the tasks matching ``root`` (a regex, as Airflow) and their
    up/downstream relatives up to ``depth`` levels (all when None), in task order."""
    order = task_order(dag)
    if not root:
        return order
    try:
        pattern = re.compile(root)
    except re.error as exc:
        raise problem.bad_request(f"root: invalid regular expression {root!r}: {exc}", field="query.root") from None
    selected = {t for t in order if pattern.search(t)}
    edges = edges_of(dag)
    down: dict[str, set[str]] = {t: set() for t in edges}
    for t, ups in edges.items():
        for u in ups:
            down.setdefault(u, set()).add(t)

    def walk(start: set[str], nxt: Callable[[str], set[str] | frozenset[str]]) -> set[str]:
        seen: set[str] = set()
        frontier = set(start)
        level = 0
        while frontier and (depth is None or level < depth):
            frontier = {n for t in frontier for n in nxt(t)} - seen - start
            seen |= frontier
            level += 1
        return seen

    result = set(selected)
    if upstream:
        result |= walk(selected, lambda t: edges.get(t, frozenset()))
    if downstream:
        result |= walk(selected, lambda t: down.get(t, set()))
    return [t for t in order if t in result]


def run_query(req: falcon.Request, dag_id: str, *, default_order: str = "-run_after",
              default_limit: int = 50) -> RunQuery:
    """The grid endpoints' run filters (``run_after`` range, run_type, state, triggering_user)."""
    orders = dto.order_by(req, GRID_ORDER_FIELDS, default_order)
    if len(orders) > 1:
        raise problem.bad_request("order_by: the grid orders by one field", field="query.order_by")
    order = ("-" if orders[0].descending else "") + orders[0].field
    pg = dto.page(req, default_limit=default_limit)
    run_types = dto.query_list(req, "run_type")
    for t in run_types:
        if t not in RUN_TYPES:
            raise problem.invalid("query.run_type", f"{t!r} is not one of {', '.join(sorted(RUN_TYPES))}")
    states = dto.query_list(req, "state")
    for s in states:
        if s not in RUN_STATES:
            raise problem.invalid("query.state", f"{s!r} is not one of {', '.join(sorted(RUN_STATES))}")
    user_match = dto.pattern_matcher(dto.query_str(req, "triggering_user"))
    user_prefix = dto.prefix_matcher(dto.query_str(req, "triggering_user_prefix"))

    def where(run: DagRun) -> bool:
        if user_match is not None and not user_match(run.triggering_user_name):
            return False
        return user_prefix is None or user_prefix(run.triggering_user_name)

    r = dto.datetime_range(req, "run_after")
    return RunQuery(
        dag_ids=[dag_id], states=states or None, run_types=run_types or None,
        run_after_gte=r.gte, run_after_gt=r.gt, run_after_lte=r.lte, run_after_lt=r.lt,
        where=where if (user_match or user_prefix) else None,
        order_by=order, limit=pg.limit, offset=pg.offset,
    )


def run_duration(run: DagRun, now: datetime) -> float:
    """The grid's bar height: ``(end_date or now) - start_date`` in seconds, 0 before it starts."""
    if run.start_date is None:
        return 0.0
    return max(0.0, ((run.end_date or now) - run.start_date).total_seconds())


def light_run(v: Versioned[DagRun]) -> dict[str, Any]:
    """``DAGRunLightResponse``; ``id`` is the run's creation index (an int, as Airflow's row id)."""
    run = v.record
    return {
        "id": v.create_index,
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "logical_date": dto.iso(run.logical_date),
        "run_after": dto.iso(run.run_after),
        "start_date": dto.iso(run.start_date),
        "end_date": dto.iso(run.end_date),
        "state": str(run.state),
        "duration": _runs.duration(run.start_date, run.end_date),
    }


def now(ctx: Any) -> datetime:
    return ctx.clock()  # type: ignore[no-any-return]
