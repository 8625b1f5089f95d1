"""Health endpoints, all public (Nomad/Consul checks and the UI's home page poll them).

* ``/health/live``: the process answers (no dependencies), for restart decisions.
* ``/health/ready``: the state store answers; 503 problem naming the failure otherwise, so Consul
  takes this replica out of rotation while the store is down.
* ``/api/v2/monitor/health``: Airflow's ``HealthInfoResponse``. ``metadatabase`` is a real store
  round trip; ``scheduler`` is healthy while a scheduler holds the leader lock (a live, renewed
  session) and ``latest_scheduler_heartbeat`` is the time that was observed; Leoflow has no
  triggerer, so that entry is honestly ``null``/``null``; ``dag_processor`` is ``null`` as in
  Airflow without a standalone processor (DAG parsing is not a separate job).
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from leoflow.api import problem
from leoflow.api.context import AppContext
from leoflow.api.dto import iso
from leoflow.store.election import LeaderInfo

log = logging.getLogger("leoflow.api.health")


def store_ok(ctx: AppContext) -> tuple[bool, str | None]:
    try:
        ping = getattr(ctx.repos, "ping", None)
        if callable(ping):
            ping()
        else:
            ctx.store.keys(ctx.config.store.prefix + "/", "/")
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


def scheduler_leader(ctx: AppContext) -> LeaderInfo | None:
    """The scheduler leader, read from its session lock: a held lock proves a live session (the
    store frees it within 2 x TTL of the last renewal), so no heartbeat key is written."""
    try:
        leader: LeaderInfo | None = ctx.repos.leader()
        return leader
    except Exception as exc:
        log.warning("cannot read the scheduler leader lock", extra={"error": str(exc)})
        return None


class LiveResource:
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}
        resp.set_header("Cache-Control", "no-store")


class ReadyResource:
    public = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok, error = store_ok(self.ctx)
        resp.set_header("Cache-Control", "no-store")
        if not ok:
            raise problem.Problem(503, f"state store unreachable: {error}", type_="unavailable",
                                  extra={"checks": {"store": "unhealthy"}})
        resp.media = {"status": "ready", "checks": {"store": "healthy"}}


class MonitorHealthResource:
    public = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = health_info(self.ctx)
        resp.set_header("Cache-Control", "no-store")


def health_info(ctx: AppContext) -> dict[str, Any]:
    ok, _ = store_ok(ctx)
    leader = scheduler_leader(ctx) if ok else None
    # The heartbeat is when this read saw the leader's session alive (Leoflow writes no beats).
    beat = ctx.clock() if leader is not None else None
    sched_status = "healthy" if leader is not None else "unhealthy"
    return {
        "metadatabase": {"status": "healthy" if ok else "unhealthy"},
        "scheduler": {"status": sched_status, "latest_scheduler_heartbeat": iso(beat)},
        "triggerer": {"status": None, "latest_triggerer_heartbeat": None},
        "dag_processor": None,
    }


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/health/live", LiveResource())
    app.add_route("/health/ready", ReadyResource(ctx))
    app.add_route("/api/v2/monitor/health", MonitorHealthResource(ctx))
