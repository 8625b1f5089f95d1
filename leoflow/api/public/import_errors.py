"""``/api/v2/importErrors``: DAG files that failed to parse (``file:line:col`` problems + trace)."""

from __future__ import annotations

from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.domain.records import DagImportError

ORDER_FIELDS = ("id", "import_error_id", "timestamp", "filename", "bundle_name", "stack_trace")


def import_error_response(e: DagImportError) -> dict[str, Any]:
    return {
        "import_error_id": e.import_error_id,
        "timestamp": dto.iso(e.timestamp),
        "filename": e.filename,
        "bundle_name": e.bundle_name or None,
        "stack_trace": e.stack_trace,
    }


class ImportErrorCollection:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        orders = dto.order_by(req, ORDER_FIELDS, "id")
        rows = list(self.ctx.repos.dags.import_errors())
        filename = dto.query_str(req, "filename")
        if filename is not None:
            rows = [e for e in rows if e.filename == filename]
        bundle = dto.query_str(req, "bundle_name")
        if bundle is not None:
            rows = [e for e in rows if e.bundle_name == bundle]
        for matcher in (dto.pattern_matcher(dto.query_str(req, "filename_pattern")),
                        dto.prefix_matcher(dto.query_str(req, "filename_prefix_pattern"))):
            if matcher is not None:
                rows = [e for e in rows if matcher(e.filename)]
        keys: dict[str, Any] = {
            "id": lambda e: e.import_error_id,
            "import_error_id": lambda e: e.import_error_id,
            "timestamp": lambda e: e.timestamp,
            "filename": lambda e: e.filename,
            "bundle_name": lambda e: e.bundle_name,
            "stack_trace": lambda e: e.stack_trace,
        }
        rows = dto.sort_rows(rows, orders, keys)
        resp.media = dto.collection("import_errors", [import_error_response(e) for e in page.slice(rows)], len(rows))


class ImportErrorItem:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, import_error_id: str) -> None:
        try:
            ident = int(import_error_id)
        except ValueError:
            raise problem.invalid("path.import_error_id", f"{import_error_id!r} is not a valid integer") from None
        found = self.ctx.repos.dags.import_error(ident)
        if found is None:
            raise problem.not_found(f"The ImportError with import_error_id: `{ident}` was not found")
        resp.media = import_error_response(found)


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/importErrors", ImportErrorCollection(ctx))
    app.add_route("/api/v2/importErrors/{import_error_id}", ImportErrorItem(ctx))
