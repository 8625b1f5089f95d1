"""List endpoints of the run side: filter, order and page records held in memory.

Why in memory: the store has KV semantics, so a listing reads one prefix of records and applies
Airflow's query rules here. The parsing of each rule lives in ``leoflow.api.dto`` (shared with
the DAG endpoints); this module composes them the way Airflow's list routes do: predicates from
the query, ``order_by`` with the primary key appended as a tie-breaker (so pages are stable),
then offset paging with ``total_entries``, or cursor paging when ``cursor`` is present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import falcon

from leoflow.api import dto, problem

T = TypeVar("T")
Predicate = Callable[[T], bool]


def map_index(req: falcon.Request) -> int:
    """``?map_index=`` of one task instance: -1 (the unmapped task) when absent, 422 below -1."""
    return dto.query_int(req, "map_index", default=-1, minimum=-1)


def datetime_ranges(req: falcon.Request, name: str, get: Callable[[T], datetime | None]) -> list[Predicate[T]]:
    bounds = dto.datetime_range(req, name)
    return [] if bounds.empty else [lambda item: bounds.contains(get(item))]


def number_ranges(req: falcon.Request, name: str, get: Callable[[T], float | None]) -> list[Predicate[T]]:
    bounds = dto.float_range(req, name)
    return [] if bounds.empty else [lambda item: bounds.contains(get(item))]


def body_ranges(body: Mapping[str, Any], name: str, get: Callable[[T], Any]) -> list[Predicate[T]]:
    """The same ranges from a validated batch body (``run_after_gte`` ... as fields)."""
    bounds = dto.Range(*(body.get(f"{name}_{op}") for op in ("gte", "gt", "lte", "lt")))
    return [] if bounds.empty else [lambda item: bounds.contains(get(item))]


def patterns(req: falcon.Request, name: str, get: Callable[[T], str | None]) -> list[Predicate[T]]:
    """``<name>_pattern`` (substring, case-insensitive) and ``<name>_prefix_pattern`` (prefix)."""
    preds: list[Predicate[T]] = []
    for matcher in (
        dto.pattern_matcher(dto.query_str(req, f"{name}_pattern")),
        dto.prefix_matcher(dto.query_str(req, f"{name}_prefix_pattern")),
    ):
        if matcher is not None:
            preds.append(lambda item, m=matcher: m(get(item)))
    return preds


def any_of(values: Iterable[Any], get: Callable[[T], Any]) -> list[Predicate[T]]:
    wanted = set(values)
    return [lambda item: get(item) in wanted] if wanted else []


def enum_list(
    req: falcon.Request, name: str, allowed: Iterable[str], nulls: Sequence[str] = ("none",)
) -> list[str | None]:
    """A repeated enum filter; ``none`` (and ``no_status`` for TIs) selects a null value, as Airflow."""
    allowed_set = set(allowed)
    out: list[str | None] = []
    for value in dto.query_list(req, name):
        if value in nulls:
            out.append(None)
        elif value in allowed_set:
            out.append(value)
        else:
            raise problem.invalid(
                f"query.{name}",
                f"Invalid value {value!r} for {name}. Valid values are {', '.join(sorted(allowed_set))}",
            )
    return out


@dataclass(frozen=True)
class Sorting(Generic[T]):
    """The orderable fields of one listing (public name -> accessor) and its primary key."""

    keys: Mapping[str, Callable[[T], Any]]
    default: str
    primary_key: str
    aliases: Mapping[str, str] | None = None

    def orders(self, values: Sequence[str]) -> list[dto.Order]:
        values = [v for v in values if v != ""] or [self.default]
        if len(values) > 10:
            raise problem.bad_request(
                f"Ordering with more than 10 parameters is not allowed. Provided: {values}", field="query.order_by"
            )
        out: list[dto.Order] = []
        for value in values:
            desc = value.startswith("-")
            name = value.lstrip("-")
            name = (self.aliases or {}).get(name, name)
            if name not in self.keys:
                raise problem.bad_request(
                    f"Ordering with '{name}' is disallowed or the attribute does not exist on the model; "
                    f"allowed: {', '.join(sorted(self.keys))}",
                    field="query.order_by",
                )
            out.append(dto.Order(name, desc))
        if self.primary_key not in {o.field for o in out}:
            out.append(dto.Order(self.primary_key, out[0].descending))
        return out


def listing(
    req: falcon.Request,
    items: Iterable[T],
    predicates: Sequence[Predicate[T]],
    sorting: Sorting[T],
    name: str,
    shape: Callable[[T], Any],
    *,
    order_by: Sequence[str] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor_allowed: bool = False,
) -> dict[str, Any]:
    """A collection response: ``{name: [...], total_entries}`` (+ cursors in cursor mode)."""
    page = dto.page(req) if limit is None else dto.Page(limit=limit, offset=offset or 0)
    orders = sorting.orders(list(order_by) if order_by is not None else dto.query_list(req, "order_by"))
    matched = [item for item in items if all(p(item) for p in predicates)]
    ordered = dto.sort_rows(matched, orders, sorting.keys)
    if cursor_allowed and dto.is_cursor_mode(req):
        cpage = dto.cursor_page(req, ordered, limit=page.limit)
        return {
            name: [shape(i) for i in cpage.rows],
            "total_entries": cpage.total_entries,
            "total_entries_limit": None,
            "next_cursor": cpage.next_cursor,
            "previous_cursor": cpage.previous_cursor,
        }
    return {name: [shape(i) for i in page.slice(ordered)], "total_entries": len(ordered)}
