"""Pure query evaluation over run records: filtering, Airflow's ``order_by``, paging, counts.

Kept free of I/O so the same code serves both read paths (a prefix scan, or the in-process
projection) and is unit-testable without a store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.store.repos.base import Page, Versioned

RUN_ORDER_FIELDS = frozenset({
    "id", "dag_id", "run_id", "dag_run_id", "state", "run_type", "run_after", "logical_date", "start_date",
    "end_date", "queued_at", "data_interval_start", "data_interval_end", "duration", "dag_version_number",
    "triggering_user_name", "conf", "updated_at",
})


@dataclass(frozen=True)
class RunQuery:
    """Filters of Airflow's ``GET /dags/{dag_id}/dagRuns`` (and the batch ``list``), already parsed.

    ``dag_ids=None`` means every DAG (Airflow's ``~``). Range bounds are inclusive (``_gte``/``_lte``)
    or exclusive (``_gt``/``_lt``) as in Airflow. ``where`` is an extra predicate for filters this
    class does not name (e.g. a ``run_id_pattern`` the API has already turned into a function).
    ``order_by`` is one Airflow field name, ``-`` for descending; ties break on creation order in
    the same direction. Nulls sort last ascending and first descending (PostgreSQL, Airflow's
    reference database). ``limit=None`` returns everything.
    """

    dag_ids: Collection[str] | None = None
    states: Collection[DagRunState | str] | None = None
    run_types: Collection[DagRunType | str] | None = None
    run_ids: Collection[str] | None = None
    dag_version_numbers: Collection[int] | None = None
    run_after_gte: datetime | None = None
    run_after_lte: datetime | None = None
    run_after_gt: datetime | None = None
    run_after_lt: datetime | None = None
    logical_date_gte: datetime | None = None
    logical_date_lte: datetime | None = None
    logical_date_gt: datetime | None = None
    logical_date_lt: datetime | None = None
    start_date_gte: datetime | None = None
    start_date_lte: datetime | None = None
    start_date_gt: datetime | None = None
    start_date_lt: datetime | None = None
    end_date_gte: datetime | None = None
    end_date_lte: datetime | None = None
    end_date_gt: datetime | None = None
    end_date_lt: datetime | None = None
    where: Callable[[DagRun], bool] | None = None
    order_by: str = "id"
    limit: int | None = None
    offset: int = 0


_RANGES = ("run_after", "logical_date", "start_date", "end_date")


def _sort_value(run: Versioned[DagRun], name: str) -> Any:
    if name == "id":
        return run.create_index
    if name == "dag_run_id":
        name = "run_id"
    if name == "duration":
        r = run.record
        return None if r.start_date is None or r.end_date is None else (r.end_date - r.start_date).total_seconds()
    if name == "updated_at":
        return run.index
    if name == "conf":
        return str(dict(run.record.conf))
    value = getattr(run.record, name)
    return value.value if hasattr(value, "value") and not isinstance(value, datetime) else value


def check_order_by(order_by: str) -> tuple[str, bool]:
    """(field, descending), or ValueError naming the field and the allowed ones."""
    descending = order_by.startswith("-")
    name = order_by[1:] if descending else order_by
    if name not in RUN_ORDER_FIELDS:
        allowed = ", ".join(sorted(RUN_ORDER_FIELDS))
        raise ValueError(f"order_by: cannot order dag runs by {name!r}; allowed: {allowed}")
    return name, descending


def compile_filter(q: RunQuery) -> Callable[[DagRun], bool]:
    """One predicate holding only the checks ``q`` asks for: filtering 10,000 runs stays cheap."""
    checks: list[Callable[[DagRun], bool]] = []
    for attr, allowed in (("dag_id", q.dag_ids), ("state", q.states), ("run_type", q.run_types),
                          ("run_id", q.run_ids), ("dag_version_number", q.dag_version_numbers)):
        if allowed is not None:
            values = frozenset(allowed)
            checks.append(lambda r, attr=attr, values=values: getattr(r, attr) in values)
    for name in _RANGES:
        gte, lte, gt, lt = (getattr(q, f"{name}_{s}") for s in ("gte", "lte", "gt", "lt"))
        if gte is None and lte is None and gt is None and lt is None:
            continue

        def in_range(r: DagRun, name: str = name, gte: Any = gte, lte: Any = lte, gt: Any = gt, lt: Any = lt) -> bool:
            value = getattr(r, name)
            if value is None:
                return False
            if (gte is not None and value < gte) or (lte is not None and value > lte):
                return False
            return not ((gt is not None and value <= gt) or (lt is not None and value >= lt))

        checks.append(in_range)
    if q.where is not None:
        checks.append(q.where)
    if not checks:
        return lambda r: True
    if len(checks) == 1:
        return checks[0]
    return lambda r: all(check(r) for check in checks)


def matches(run: DagRun, q: RunQuery) -> bool:
    return compile_filter(q)(run)


def sort_runs(runs: list[Versioned[DagRun]], order_by: str) -> list[Versioned[DagRun]]:
    name, descending = check_order_by(order_by)

    def key(item: Versioned[DagRun]) -> tuple[bool, Any, int]:
        value = _sort_value(item, name)
        return (value is None, value if value is not None else 0, item.create_index)

    if descending:
        # Nulls first when descending: reverse of "nulls last ascending".
        return sorted(runs, key=key, reverse=True)
    return sorted(runs, key=key)


def page(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    if offset < 0:
        raise ValueError("offset: must be >= 0")
    if limit is not None and limit < 0:
        raise ValueError("limit: must be >= 0")
    return items[offset:] if limit is None else items[offset : offset + limit]


_FILTERS = tuple(
    name for name in RunQuery.__dataclass_fields__ if name not in ("dag_ids", "order_by", "limit", "offset")
)


def has_filters(q: RunQuery) -> bool:
    """True when ``q`` filters on anything but the DAG ids."""
    return any(getattr(q, name) is not None for name in _FILTERS)


def query_runs(runs: Iterable[Versioned[DagRun]], q: RunQuery) -> Page[Versioned[DagRun]]:
    check_order_by(q.order_by)
    keep = compile_filter(q)
    selected = [r for r in runs if keep(r.record)]
    ordered = sort_runs(selected, q.order_by)
    return Page(page(ordered, q.limit, q.offset), len(selected))


def query_sorted(ordered: list[Versioned[DagRun]], q: RunQuery) -> Page[Versioned[DagRun]]:
    """``query_runs`` over runs already sorted by ``q.order_by``: no sort, and no scan at all
    when nothing but the order is asked (the projection caches the sorted list)."""
    if not has_filters(q) and q.dag_ids is None:
        return Page(page(ordered, q.limit, q.offset), len(ordered))
    keep = compile_filter(q)
    selected = [r for r in ordered if keep(r.record)]
    return Page(page(selected, q.limit, q.offset), len(selected))


def latest_per_dag(runs: Iterable[Versioned[DagRun]], n: int = 1) -> dict[str, list[Versioned[DagRun]]]:
    """Newest ``n`` runs of each DAG by ``run_after`` (ties: newest created), as the DAG list shows."""
    per: dict[str, list[Versioned[DagRun]]] = {}
    for r in runs:
        per.setdefault(r.record.dag_id, []).append(r)
    return {
        dag: sorted(items, key=lambda r: (r.record.run_after, r.create_index), reverse=True)[:n]
        for dag, items in per.items()
    }


def counts_by_state(runs: Iterable[DagRun]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for r in runs:
        counts.setdefault(r.dag_id, Counter())[str(r.state)] += 1
    return {dag: dict(c) for dag, c in counts.items()}


@dataclass(frozen=True)
class CalendarBucket:
    """Runs of one DAG per time bucket and state (Airflow's ``/ui/calendar`` ``dag_runs`` items)."""

    date: datetime
    state: str
    count: int


def calendar(
    runs: Iterable[DagRun],
    *,
    start: datetime | None,
    end: datetime | None,
    granularity: Literal["daily", "hourly"] = "daily",
) -> list[CalendarBucket]:
    """Bucket by ``logical_date`` (``run_after`` when there is none), truncated to the day or hour."""
    counts: Counter[tuple[datetime, str]] = Counter()
    for r in runs:
        when = r.logical_date or r.run_after
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        bucket = when.replace(minute=0, second=0, microsecond=0)
        if granularity == "daily":
            bucket = bucket.replace(hour=0)
        counts[(bucket, str(r.state))] += 1
    return [CalendarBucket(d, s, c) for (d, s), c in sorted(counts.items())]

