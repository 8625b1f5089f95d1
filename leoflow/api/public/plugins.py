"""``/api/v2/plugins`` and ``/api/v2/plugins/importErrors``: what Leoflow adds to the Airflow UI.

Airflow's UI puts every plugin external view whose ``destination`` is ``nav`` into its navigation
(grouped under its ``category``) and shows it at ``/plugin/<url_route>`` in a same-origin iframe.
Leoflow declares its own pages that way (agents, executors, git source, served under
``/leoflow/``), so they appear in the unmodified bundle. Leoflow loads no third-party plugins, so
there are never plugin import errors.
"""

from __future__ import annotations

from typing import Any

import falcon

import leoflow
from leoflow.api import dto
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.ui.serve import normalize_base

CATEGORY = "Leoflow"
VIEWS = (
    # (name, slug) -> /leoflow/<slug>, shown at /plugin/leoflow-<slug>
    ("Agents", "agents"),
    ("Executors", "executors"),
    ("Git source", "git"),
)


def leoflow_plugin(base_url: str) -> dict[str, Any]:
    base = normalize_base(base_url)
    return {
        "name": "leoflow",
        "macros": [],
        "flask_blueprints": [],
        "fastapi_apps": [],
        "fastapi_root_middlewares": [],
        "external_views": [
            {"name": name, "href": f"{base}leoflow/{slug}", "url_route": f"leoflow-{slug}", "category": CATEGORY,
             "destination": "nav", "icon": None, "icon_dark_mode": None, "nav_top_level": False}
            for name, slug in VIEWS
        ],
        "react_apps": [],
        "appbuilder_views": [],
        "appbuilder_menu_items": [],
        "global_operator_extra_links": [],
        "operator_extra_links": [],
        "source": f"leoflow {leoflow.__version__} (built in)",
        "listeners": [],
        "timetables": [],
    }


class Plugins:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        pg = dto.page(req)
        plugins = [leoflow_plugin(self.ctx.config.server.base_url)]
        resp.media = dto.collection("plugins", pg.slice(plugins), len(plugins))


class PluginImportErrors:
    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = dto.collection("import_errors", [], 0)


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/api/v2/plugins", Plugins(ctx))
    app.add_route("/api/v2/plugins/importErrors", PluginImportErrors())
