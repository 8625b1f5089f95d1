"""The graph view (``/ui/structure/structure_data``) and the DAG dependency graph (``/ui/dependencies``).

``structure_data`` answers for the version the UI asks for (``version_number``, which the UI takes
from ``latest_dag_version``); without it the canvas stays empty, so an unknown version is a 404
naming it. Leoflow DAGs have no task groups, assets or cross-DAG triggers, so the graph is the
tasks and their edges, and ``external_dependencies`` adds nothing: that is the truth, not a stub.
"""

from __future__ import annotations

from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.ui import _common


def structure(dag: Any, task_ids: list[str]) -> dict[str, Any]:
    keep = set(task_ids)
    nodes = []
    for task_id in task_ids:
        task = dag.tasks[task_id]
        node: dict[str, Any] = {"id": task_id, "label": task_id, "type": "task", "operator": task.operator}
        doc = (task.doc_md or "").strip()
        if doc:
            node["tooltip"] = doc.splitlines()[0][:200]
        if task.is_setup:
            node["setup_teardown_type"] = "setup"
        elif task.is_teardown:
            node["setup_teardown_type"] = "teardown"
        nodes.append(node)
    edges = []
    for task_id in task_ids:
        task = dag.tasks[task_id]
        for up in sorted(task.upstream):
            if up in keep:
                edge: dict[str, Any] = {"source_id": up, "target_id": task_id}
                if dag.tasks[up].is_setup and task.is_teardown:
                    edge["is_setup_teardown"] = True
                edges.append(edge)
    edges.sort(key=lambda e: (e["source_id"], e["target_id"]))
    return {"nodes": nodes, "edges": edges}


class StructureData:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        dag_id = dto.query_str(req, "dag_id")
        if dag_id is None:
            raise problem.invalid("query.dag_id", "field required")
        entry = _common.require_dag(self.ctx, dag_id)
        version = dto.query_int(req, "version_number", minimum=1)
        dag = _common.dag_version(self.ctx, entry, version)
        dto.query_bool(req, "external_dependencies", default=False)  # validated; nothing external exists
        task_ids = _common.subset(
            dag, dto.query_str(req, "root"),
            bool(dto.query_bool(req, "include_upstream", default=False)),
            bool(dto.query_bool(req, "include_downstream", default=False)),
            dto.query_int(req, "depth", minimum=0),
        )
        resp.media = structure(dag, task_ids)


class Dependencies:
    """Scheduling dependencies between DAGs (asset and trigger edges in Airflow).

    Leoflow DAGs are scheduled by time or by hand only, so no DAG depends on another: the whole
    graph is empty, and a DAG's own component is that DAG alone.
    """

    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        node_id = dto.query_str(req, "node_id")
        kind = dto.query_str(req, "dependency_type") or "scheduling"
        if kind not in ("scheduling", "data"):
            raise problem.invalid("query.dependency_type", f"{kind!r} is not one of scheduling, data")
        if kind == "data":
            if node_id is None or not node_id.startswith("asset:"):
                raise problem.bad_request("Data dependencies require an asset node_id (e.g., 'asset:123')",
                                          field="query.node_id")
            raise problem.not_found(f"Asset with id {node_id.removeprefix('asset:')} was not found "
                                    "(Leoflow has no assets)")
        if node_id is None:
            resp.media = {"nodes": [], "edges": []}
            return
        dag_id = node_id.removeprefix("dag:")
        if not node_id.startswith("dag:") or self.ctx.repos.dags.get(dag_id) is None:
            raise problem.not_found(f"Unique connected component not found, got {node_id!r}")
        resp.media = {"nodes": [{"id": node_id, "label": dag_id, "type": "dag"}], "edges": []}


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/structure/structure_data", StructureData(ctx))
    app.add_route("/ui/dependencies", Dependencies(ctx))
