"""Airflow features Leoflow does not have yet: honest empty reads, 501 writes.

Why answer at all: the UI calls these on ordinary screens (asset events on the home page and
the DAG overview, HITL "required actions" on every DAG screen, backfills, the task and asset
state stores), and a 404 there shows an error box or breaks a widget. So collections answer
schema-valid and empty, a single item answers 404 (it really does not exist), and every write
answers 501 with a problem whose ``feature`` names what is missing, so a script learns the
truth instead of a fake success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role

ASSETS = "assets and asset events"
ASSET_STATE = "the asset state store"
BACKFILLS = "backfills"
HITL = "human-in-the-loop (required actions)"
TASK_STATE = "the task state store"
PARSE = "on-demand DAG file parsing requests"
PARTITIONS = "partitioned DAG runs"
CONN_DEFAULTS = "Airflow's default connections"
CONN_ASYNC_TEST = "queued (asynchronous) connection tests"


def _empty(name: str, *, with_total: bool = True) -> Callable[[falcon.Request], dict[str, Any]]:
    def answer(req: falcon.Request) -> dict[str, Any]:
        dto.page(req)  # still validate limit/offset, as Airflow would
        return {name: [], "total_entries": 0} if with_total else {name: []}

    return answer


def _missing(what: str) -> Callable[[falcon.Request], dict[str, Any]]:
    def answer(req: falcon.Request) -> dict[str, Any]:
        raise problem.not_found(f"{what} not found: Leoflow has no {what}s yet")

    return answer


class Unsupported:
    """One path: a GET answer (empty collection or 404) and 501 for the listed write methods."""

    def __init__(
        self,
        feature: str,
        get: Callable[[falcon.Request], dict[str, Any]] | None = None,
        writes: tuple[str, ...] = (),
        write_role: Role = Role.USER,
        read_role: Role = Role.VIEWER,
    ) -> None:
        self.feature = feature
        self._writes = writes
        self.roles = {"GET": read_role, **{m: write_role for m in writes}}
        if get is not None:
            self.on_get = self._answering(get)
        for method in writes:
            setattr(self, f"on_{method.lower()}", self._on_write)

    @staticmethod
    def _answering(get: Callable[[falcon.Request], dict[str, Any]]) -> Callable[..., None]:
        def on_get(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
            resp.media = get(req)

        return on_get

    def _on_write(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        raise problem.not_implemented(self.feature)


ROUTES: tuple[tuple[str, Unsupported], ...] = (
    # Assets
    ("/api/v2/assets", Unsupported(ASSETS, _empty("assets"))),
    ("/api/v2/assets/aliases", Unsupported(ASSETS, _empty("asset_aliases"))),
    ("/api/v2/assets/aliases/{asset_alias_id}", Unsupported(ASSETS, _missing("asset alias"))),
    ("/api/v2/assets/events", Unsupported(ASSETS, _empty("asset_events"), ("POST",))),
    ("/api/v2/assets/{asset_id}", Unsupported(ASSETS, _missing("asset"))),
    ("/api/v2/assets/{asset_id}/materialize", Unsupported(ASSETS, None, ("POST",))),
    ("/api/v2/assets/{asset_id}/queuedEvents", Unsupported(ASSETS, _empty("queued_events"), ("DELETE",))),
    ("/api/v2/dags/{dag_id}/assets/queuedEvents", Unsupported(ASSETS, _empty("queued_events"), ("DELETE",))),
    (
        "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents",
        Unsupported(ASSETS, _missing("queued asset event"), ("DELETE",)),
    ),
    (
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents",
        Unsupported(ASSETS, _empty("asset_events")),
    ),
    # Asset state store
    ("/api/v2/assets/{asset_id}/state-store", Unsupported(ASSET_STATE, _empty("asset_state_store"), ("DELETE",))),
    (
        "/api/v2/assets/{asset_id}/state-store/{key}",
        Unsupported(ASSET_STATE, _missing("asset state store key"), ("PUT", "DELETE")),
    ),
    # Backfills
    ("/api/v2/backfills", Unsupported(BACKFILLS, _empty("backfills"), ("POST",))),
    ("/api/v2/backfills/dry_run", Unsupported(BACKFILLS, None, ("POST",))),
    ("/api/v2/backfills/{backfill_id}", Unsupported(BACKFILLS, _missing("backfill"))),
    ("/api/v2/backfills/{backfill_id}/pause", Unsupported(BACKFILLS, None, ("PUT",))),
    ("/api/v2/backfills/{backfill_id}/unpause", Unsupported(BACKFILLS, None, ("PUT",))),
    ("/api/v2/backfills/{backfill_id}/cancel", Unsupported(BACKFILLS, None, ("PUT",))),
    # Human in the loop
    ("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails", Unsupported(HITL, _empty("hitl_details"))),
    (
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
        Unsupported(HITL, _missing("human-in-the-loop detail"), ("PATCH",)),
    ),
    (
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails/tries/{try_number}",
        Unsupported(HITL, _missing("human-in-the-loop detail")),
    ),
    # Task state store
    (
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store",
        Unsupported(TASK_STATE, _empty("task_state_store"), ("DELETE",)),
    ),
    (
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store/{key}",
        Unsupported(TASK_STATE, _missing("task state store key"), ("PUT", "PATCH", "DELETE")),
    ),
    # Others
    ("/api/v2/parseDagFile/{file_token}", Unsupported(PARSE, None, ("PUT",))),
    ("/api/v2/dags/{dag_id}/clearPartitions", Unsupported(PARTITIONS, None, ("POST",))),
    ("/api/v2/connections/defaults", Unsupported(CONN_DEFAULTS, None, ("POST",), write_role=Role.OP)),
    (
        "/api/v2/connections/enqueue-test",
        Unsupported(
            CONN_ASYNC_TEST, _missing("queued connection test"), ("POST",), write_role=Role.OP, read_role=Role.OP
        ),
    ),
)


def register(app: falcon.App, ctx: Any) -> None:
    for path, resource in ROUTES:
        app.add_route(path, resource)
