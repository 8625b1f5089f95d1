"""``/api/v2/dagSources/{dag_id}`` and ``/api/v2/dags/{dag_id}/dagVersions[/{version_number}]``.

Every commit that changes a DAG's serialized form is a version (``bundle_version`` = commit sha);
the Code tab shows the source of the version a run was pinned to (``version_number``).
``dagVersions`` accepts ``~`` as the DAG id (all DAGs), as Airflow does.
"""

from __future__ import annotations

from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.public import _dagshape as shape
from leoflow.domain.records import DagVersion

ORDER_FIELDS = ("id", "version_number", "bundle_name", "bundle_version", "created_at", "dag_id")


def _version_number(raw: str, field: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise problem.invalid(field, f"{raw!r} is not a valid integer") from None
    if value < 1:
        raise problem.invalid(field, f"must be >= 1, got {value}")
    return value


class DagSource:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        version = dto.query_int(req, "version_number", minimum=1)
        entry = shape.require_entry(self.ctx, dag_id)
        number = version if version is not None else (entry.latest.version_number if entry.latest else None)
        if number is None or self.ctx.repos.dags.version(dag_id, number) is None:
            raise problem.not_found(f"The source code of Dag {dag_id!r}, version {number} was not found")
        content = self.ctx.repos.dags.source(dag_id, number)
        accept = req.get_header("Accept") or "application/json"
        wants_text = req.client_prefers(("application/json", "text/plain")) == "text/plain"
        if not wants_text and not req.client_accepts("application/json"):
            raise problem.Problem(406, f"cannot answer {accept}; use application/json or text/plain",
                                  type_="not-acceptable")
        if wants_text:
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = content or ""
            return
        resp.media = {"content": content, "dag_id": dag_id, "version_number": number, "dag_display_name": dag_id}


def _filters(req: falcon.Request) -> list[Any]:
    preds = []
    number = dto.query_int(req, "version_number")
    if number is not None:
        preds.append(lambda v: v.version_number == number)
    for name in ("bundle_name", "bundle_version"):
        value = dto.query_str(req, name)
        if value is not None:
            preds.append(lambda v, n=name, x=value: getattr(v, n) == x)
    return preds


class DagVersionCollection:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        page = dto.page(req)
        orders = dto.order_by(req, ORDER_FIELDS, "id")
        preds = _filters(req)
        if dto.is_wildcard(dag_id):
            versions: list[DagVersion] = [v for e in self.ctx.repos.dags.list()
                                          for v in self.ctx.repos.dags.versions(e.state.dag_id)]
        else:
            shape.require_entry(self.ctx, dag_id)
            versions = self.ctx.repos.dags.versions(dag_id)
        rows = [v for v in versions if all(p(v) for p in preds)]
        keys: dict[str, Any] = {
            "id": lambda v: (v.created_at, v.dag_id, v.version_number),
            "version_number": lambda v: v.version_number,
            "bundle_name": lambda v: v.bundle_name,
            "bundle_version": lambda v: v.bundle_version,
            "created_at": lambda v: v.created_at,
            "dag_id": lambda v: v.dag_id,
        }
        rows = dto.sort_rows(rows, orders, keys)
        resp.media = dto.collection("dag_versions", [dto.dag_version_response(v) for v in page.slice(rows)],
                                    len(rows))


class DagVersionItem:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, version_number: str) -> None:
        number = _version_number(version_number, "path.version_number")
        version = self.ctx.repos.dags.version(dag_id, number)
        if version is None:
            raise problem.not_found(f"The DagVersion with dag_id: `{dag_id}` and version_number: `{number}` "
                                    "was not found")
        resp.media = dto.dag_version_response(version)


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/dagSources/{dag_id}", DagSource(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagVersions", DagVersionCollection(ctx))
    app.add_route("/api/v2/dags/{dag_id}/dagVersions/{version_number}", DagVersionItem(ctx))
