"""Leoflow's own pages, served by leoflow-server under ``/leoflow/`` and shown in the Airflow UI's
navigation as plugin external views (``/api/v2/plugins``): agents, executors, git source.

Each page has a JSON twin (``<page>.json``) with the same numbers for scripts and tests. Both need
a session like every other endpoint (the UI's iframe is same-origin, so the ``_token`` cookie
goes along).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import falcon

from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.domain.states import ACTIVE_TI_STATES
from leoflow.store.repos.agent_queue import AgentQueue
from leoflow.ui import pages, status
from leoflow.ui.serve import normalize_base

PAGES = {
    # slug: (title, template)
    "agents": ("Agents", "agents.html"),
    "executors": ("Executors", "executors.html"),
    "git": ("Git source", "git.html"),
}


def _queue(ctx: AppContext) -> AgentQueue:
    return AgentQueue(ctx.store, ctx.config.store.prefix)


def _alive(queue: AgentQueue) -> Callable[[str], bool]:
    return cache(queue.server_alive)  # one read per server per request


def agents_view(ctx: AppContext) -> status.AgentsView:
    queue = _queue(ctx)
    return status.agents_view(queue.all_live(), queue.all_entries(), _alive(queue), ctx.clock())


def executors_view(ctx: AppContext) -> status.ExecutorsView:
    queue = _queue(ctx)
    repos = ctx.repos
    active = [v.record for v in repos.runs.active()]
    snaps = repos.task_instances.list_for_runs([(r.dag_id, r.run_id) for r in active]) if active else {}
    live_tis = [v.record for s in snaps.values() for v in s.current if v.record.state in ACTIVE_TI_STATES]
    return status.executors_view(queue.all_entries(), queue.all_live(), _alive(queue), live_tis, ctx.clock())


def git_view(ctx: AppContext) -> status.GitView:
    cfg = ctx.config.dags
    dags = ctx.repos.dags
    return status.git_view(repo=cfg.repo, ref=cfg.ref, bundle_name=cfg.bundle_name, bundle=dags.bundle(cfg.bundle_name),
                           entries=dags.list(), import_errors=dags.import_errors(cfg.bundle_name), now=ctx.clock())


VIEWS: dict[str, Callable[[AppContext], Any]] = {"agents": agents_view, "executors": executors_view, "git": git_view}


class Page:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext, slug: str, as_json: bool) -> None:
        self.ctx = ctx
        self.slug = slug
        self.as_json = as_json

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = VIEWS[self.slug](self.ctx)
        resp.cache_control = ["no-cache"]
        if self.as_json:
            resp.content_type = "application/json"
            resp.text = json.dumps(status.to_json(view), separators=(",", ":"))
            return
        title, template = PAGES[self.slug]
        base = normalize_base(self.ctx.config.server.base_url)
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("X-Frame-Options", "SAMEORIGIN")
        resp.text = pages.render(template, title=title, view=view, base=base,
                                 json_href=f"{base}leoflow/{self.slug}.json")


def register(app: falcon.App, ctx: AppContext) -> None:
    for slug in PAGES:
        app.add_route(f"/leoflow/{slug}", Page(ctx, slug, as_json=False))
        app.add_route(f"/leoflow/{slug}.json", Page(ctx, slug, as_json=True))
