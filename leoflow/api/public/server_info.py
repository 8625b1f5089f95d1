"""``/api/v2/version``, ``/api/v2/config``, ``/api/v2/providers`` and ``/api/v2/jobs``.

* version: Leoflow's own version (public: the login page asks before anyone signs in).
* config: 403 unless ``[server] expose_config``, with Airflow's wording; when exposed, Leoflow's
  effective config with every secret-looking value shown as ``< hidden >`` (Airflow's marker).
  ``Accept: text/plain`` gives the INI-like text Airflow gives.
* providers: Leoflow has no Airflow provider packages; it lists the integration libraries it
  really runs on (Nomad, Consul, Vault clients) with their installed versions.
* jobs: Leoflow's only long-running job is the scheduler leader; it is listed while one holds the
  leader lock (a live session), with the host and start time it recorded.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import falcon

import leoflow
from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.health import scheduler_leader

NOT_EXPOSED = ("Your Airflow administrator chose not to expose the configuration, most likely for security "
               "reasons.")
HIDDEN = "< hidden >"
_SECRET_WORDS = ("secret", "token", "password", "key_file", "cert_file", "secret_id", "role_id")

PROVIDERS = (
    ("python-nomad", "Nomad executor: runs each task try as a Nomad batch job.",
     "https://github.com/jrxfive/python-nomad"),
    ("py-consul", "State store and leader election on Consul KV sessions.", "https://github.com/criteo/py-consul"),
    ("hvac", "Vault: agent identity tokens, connections and variables backends.", "https://hvac.readthedocs.io/"),
    ("gitpython", "Git DAG bundles: every commit that changes a DAG is a DAG version.",
     "https://gitpython.readthedocs.io/"),
)


class Version:
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"version": leoflow.__version__, "git_version": None}


def _is_secret(key: str) -> bool:
    low = key.lower()
    return any(w in low for w in _SECRET_WORDS)


def config_sections(ctx: AppContext) -> list[dict[str, Any]]:
    sections = []
    for f in dataclasses.fields(ctx.config):
        value = getattr(ctx.config, f.name)
        if not dataclasses.is_dataclass(value):
            continue
        options = []
        for g in dataclasses.fields(value):
            raw = getattr(value, g.name)
            shown = HIDDEN if _is_secret(g.name) and raw else str(raw).lower() if isinstance(raw, bool) else str(raw)
            options.append({"key": g.name, "value": shown})
        sections.append({"name": f.name, "options": options})
    return sections


def _render(req: falcon.Request, resp: falcon.Response, sections: list[dict[str, Any]]) -> None:
    preferred = req.client_prefers(("application/json", "text/plain"))
    if preferred is None:
        raise problem.Problem(406, "Only application/json or text/plain is supported", type_="not-acceptable")
    if preferred == "text/plain":
        lines = []
        for section in sections:
            lines.append(f"[{section['name']}]")
            lines.extend(f"{o['key']} = {o['value']}" for o in section["options"])
            lines.append("")
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = "\n".join(lines)
        return
    resp.media = {"sections": sections}


class ConfigResource:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.ctx.config.server.expose_config:
            raise problem.forbidden(NOT_EXPOSED)
        sections = config_sections(self.ctx)
        wanted = dto.query_str(req, "section")
        if wanted is not None:
            sections = [s for s in sections if s["name"] == wanted]
            if not sections:
                raise problem.not_found(f"Section {wanted} not found.")
        _render(req, resp, sections)


class ConfigOption:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, section: str, option: str) -> None:
        if not self.ctx.config.server.expose_config:
            raise problem.forbidden(NOT_EXPOSED)
        for s in config_sections(self.ctx):
            if s["name"] == section:
                for o in s["options"]:
                    if o["key"] == option:
                        _render(req, resp, [{"name": section, "options": [o]}])
                        return
        raise problem.not_found(f"Option [{section}/{option}] not found.")


class Providers:
    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        rows = []
        for name, description, url in PROVIDERS:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
            rows.append({"package_name": name, "description": description, "version": version,
                         "documentation_url": url})
        resp.media = dto.collection("providers", page.slice(rows), len(rows))


class Jobs:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = dto.page(req)
        dto.order_by(req, ("id", "dag_id", "state", "job_type", "start_date", "end_date", "latest_heartbeat",
                           "executor_class", "hostname", "unixname"), "id")
        starts = dto.datetime_range(req, "start_date")
        ends = dto.datetime_range(req, "end_date")
        rows: list[dict[str, Any]] = []
        leader = scheduler_leader(self.ctx)
        if leader is not None:
            started = datetime.fromtimestamp(leader.started_at, UTC) if leader.started_at else None
            job = {
                "id": leader.lock_index, "dag_id": None, "state": "running", "job_type": "SchedulerJob",
                "start_date": dto.iso(started), "end_date": None, "latest_heartbeat": dto.iso(self.ctx.clock()),
                "executor_class": self.ctx.config.scheduler.executor, "hostname": leader.host or None,
                "unixname": None, "dag_display_name": None,
            }
            if starts.contains(started) and ends.empty:
                rows.append(job)
        filters = {"job_state": "state", "job_type": "job_type", "hostname": "hostname",
                   "executor_class": "executor_class"}
        for param, field in filters.items():
            value = dto.query_str(req, param)
            if value is not None:
                rows = [r for r in rows if r[field] == value]
        alive = dto.query_bool(req, "is_alive")
        if alive is False:
            rows = []
        resp.media = dto.collection("jobs", page.slice(rows), len(rows))


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/version", Version())
    app.add_route("/api/v2/config", ConfigResource(ctx))
    app.add_route("/api/v2/config/section/{section}/option/{option}", ConfigOption(ctx))
    app.add_route("/api/v2/providers", Providers())
    app.add_route("/api/v2/jobs", Jobs(ctx))
