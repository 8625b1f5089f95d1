"""``/api/v2/eventLogs``: the audit log every API write appends to (``leoflow.api.audit``).

The unfiltered newest-first page (the Audit Log screen's default) is read without loading the
whole log (the repository reads only the day buckets the page spans); filters and other
orderings scan the log once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.domain.records import AuditEvent

ORDER_FIELDS = ("id", "event_log_id", "when", "dttm", "event", "owner", "dag_id", "task_id", "run_id",
                "map_index", "try_number", "logical_date")
_EXACT = ("dag_id", "task_id", "run_id", "owner", "event")
_ALIASES = {"id": "event_log_id", "dttm": "when"}
_PATTERNS = ("dag_id", "task_id", "run_id", "owner", "event")


def event_response(e: AuditEvent) -> dict[str, Any]:
    return {
        "event_log_id": e.event_log_id,
        "when": dto.iso(e.when),
        "dag_id": e.dag_id,
        "task_id": e.task_id,
        "run_id": e.run_id,
        "map_index": e.map_index,
        "try_number": e.try_number,
        "event": e.event,
        "logical_date": dto.iso(e.logical_date),
        "owner": e.owner,
        "extra": e.extra,
        "dag_display_name": e.dag_id,
        "task_display_name": e.task_id,
    }


def _getter(attribute: str) -> Callable[[AuditEvent], Any]:
    return lambda e: getattr(e, attribute)


def _predicates(req: falcon.Request) -> list[Callable[[AuditEvent], bool]]:
    preds: list[Callable[[AuditEvent], bool]] = []
    for name in _EXACT:
        value = dto.query_str(req, name)
        if value is not None:
            preds.append(lambda e, n=name, v=value: getattr(e, n) == v)
    for name in ("map_index", "try_number"):
        number = dto.query_int(req, name)
        if number is not None:
            preds.append(lambda e, n=name, v=number: getattr(e, n) == v)
    included = dto.query_list(req, "included_events")
    if included:
        inc = set(included)
        preds.append(lambda e: e.event in inc)
    excluded = dto.query_list(req, "excluded_events")
    if excluded:
        exc = set(excluded)
        preds.append(lambda e: e.event not in exc)
    before = dto.query_datetime(req, "before")
    after = dto.query_datetime(req, "after")
    if before is not None:
        preds.append(lambda e: e.when < before)
    if after is not None:
        preds.append(lambda e: e.when > after)
    for name in _PATTERNS:
        for matcher in (dto.pattern_matcher(dto.query_str(req, f"{name}_pattern")),
                        dto.prefix_matcher(dto.query_str(req, f"{name}_prefix_pattern"))):
            if matcher is not None:
                preds.append(lambda e, n=name, m=matcher: m(getattr(e, n)))
    return preds


class EventLogCollection:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        orders = dto.order_by(req, ORDER_FIELDS, "id")
        preds = _predicates(req)
        where = (lambda e: all(p(e) for p in preds)) if preds else None
        if len(orders) == 1:
            order = orders[0]
            field = _ALIASES.get(order.field, order.field)
            result = self.ctx.repos.audit.list(where=where, order_by=("-" if order.descending else "") + field,
                                               limit=page.limit, offset=page.offset)
            items, total = result.items, result.total_entries
        else:
            everything = self.ctx.repos.audit.list(where=where, order_by="id", limit=None).items
            keys = {f: _getter(_ALIASES.get(f, f)) for f in ORDER_FIELDS}
            ordered = dto.sort_rows(everything, orders, keys)
            items, total = page.slice(ordered), len(ordered)
        resp.media = dto.collection("event_logs", [event_response(e) for e in items], total)


class EventLogItem:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_log_id: str) -> None:
        ident = dto.path_int("event_log_id", event_log_id, minimum=0)
        try:
            found = self.ctx.repos.audit.get(ident)
        except (OverflowError, ValueError, OSError):  # an id no event can have (its time is out of range)
            found = None
        if found is None:
            raise problem.not_found(f"The Event Log with id: `{ident}` not found")
        resp.media = event_response(found)


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/eventLogs", EventLogCollection(ctx))
    app.add_route("/api/v2/eventLogs/{event_log_id}", EventLogItem(ctx))
