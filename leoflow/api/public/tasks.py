"""``/api/v2/dags/{dag_id}/tasks`` and ``/tasks/{task_id}``: the tasks of a DAG's latest version."""

from __future__ import annotations

from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.public import _dagshape as shape

ORDER_FIELDS = ("task_id", "task_display_name", "owner", "queue", "pool", "priority_weight", "retries",
                "operator_name", "trigger_rule")


class TaskCollection:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        dag = shape.require_dag(self.ctx, dag_id)
        downstream = shape.downstream_ids(dag)
        tasks = [shape.task_response(dag, t, downstream[t.task_id]) for t in dag.tasks.values()]
        # Airflow takes one order_by here (a plain string), ``-`` for descending.
        raw = dto.query_str(req, "order_by") or "task_id"
        desc = raw.startswith("-")
        name = raw.lstrip("-")
        if name not in ORDER_FIELDS:
            raise problem.bad_request(f"Ordering with '{name}' is disallowed or the attribute does not exist on "
                                      f"the model; allowed: {', '.join(ORDER_FIELDS)}", field="query.order_by")
        keys: dict[str, Any] = {f: (lambda t, f=f: t[f]) for f in ORDER_FIELDS}
        keys["operator_name"] = lambda t: t["operator_name"]
        tasks = dto.sort_rows(tasks, [dto.Order(name, desc)], keys)
        resp.media = dto.collection("tasks", tasks, len(tasks))


class TaskItem:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str, task_id: str) -> None:
        dag = shape.require_dag(self.ctx, dag_id)
        task = dag.tasks.get(task_id)
        if task is None:
            raise problem.not_found(f"Task with id {task_id!r} not found in Dag {dag_id!r}")
        resp.media = shape.task_response(dag, task, shape.downstream_ids(dag)[task_id])


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/dags/{dag_id}/tasks", TaskCollection(ctx))
    app.add_route("/api/v2/dags/{dag_id}/tasks/{task_id}", TaskItem(ctx))
