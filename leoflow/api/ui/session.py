"""``/ui/config``, ``/ui/auth/me``, ``/ui/auth/menus`` and ``POST /ui/auth/token``: what every screen
loads first (the root route loader fails without ``/ui/config``).

Menus list only the sections Leoflow backs, filtered by the user's role, so the UI does not offer
pages that would answer 403 (connections and variables need ``op``, as Airflow's simple auth
manager) or features Leoflow does not have (assets, deadlines, human-in-the-loop actions). The
``Config`` page appears only when ``[server] expose_config`` is on; otherwise ``/api/v2/config``
answers 403 as Airflow does.
"""

from __future__ import annotations

import falcon

from leoflow.api import dto
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.middleware import current_user
from leoflow.api.public import connections

# Airflow's MenuItem enum values, with the role a user needs for Leoflow to show each.
MENU_ITEMS: tuple[tuple[str, Role], ...] = (
    ("Dags", Role.VIEWER),
    ("Audit Log", Role.VIEWER),
    ("XComs", Role.VIEWER),
    ("Jobs", Role.VIEWER),
    ("Pools", Role.VIEWER),
    ("Plugins", Role.VIEWER),
    ("Providers", Role.VIEWER),
    ("Connections", Role.OP),
    ("Variables", Role.OP),
)


def config_response(ctx: AppContext) -> dict[str, object]:
    ui = ctx.config.ui
    alerts = [{"text": ui.dashboard_alert, "category": "info"}] if ui.dashboard_alert else []
    return {
        "fallback_page_limit": ui.fallback_page_limit,
        "auto_refresh_interval": ui.auto_refresh_interval,
        "hide_paused_dags_by_default": ui.hide_paused_dags_by_default,
        "instance_name": ui.instance_name,
        # Leoflow serves no Swagger page; the UI hides its "Docs" link when this is false.
        "enable_swagger_ui": False,
        "require_confirmation_dag_change": ui.require_confirmation_dag_change,
        "default_wrap": ui.default_wrap,
        "test_connection": connections.connection_test_mode(ui.test_connection),
        "dashboard_alert": alerts,
        "show_external_log_redirect": False,
        "external_log_name": None,
        "theme": None,
        "multi_team": False,
        # Clearing a run re-runs it on the version it started on unless the user ticks the box.
        "rerun_with_latest_version": None,
    }


class ConfigResource:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = config_response(self.ctx)


class MeResource:
    roles = {"GET": Role.VIEWER}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = current_user(req)
        resp.media = {"id": user.username, "username": user.username}


def menu_items(role: Role, expose_config: bool) -> list[str]:
    items = [name for name, needed in MENU_ITEMS if role >= needed]
    if expose_config and role >= Role.ADMIN:
        items.append("Config")
    return items


class MenusResource:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = current_user(req)
        resp.media = {
            "authorized_menu_items": menu_items(user.role, self.ctx.config.server.expose_config),
            # Leoflow's own pages reach the navigation as plugin external views (/api/v2/plugins).
            "extra_menu_items": [],
        }


TOKEN_BODY = {
    "type": "object",
    "properties": {"token_type": {"type": "string", "enum": ["api", "cli"]}},
    "additionalProperties": False,
}


class TokenResource:
    """Re-mints a token for an already authenticated user ("Generate token" in the user menu)."""

    roles = {"POST": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = current_user(req)
        body = dto.json_body(req, TOKEN_BODY) if req.content_length else {}
        token_type = body.get("token_type", "api")
        expiry = self.ctx.tokens.expiry_seconds
        token = self.ctx.tokens.issue(user.username, user.role.label, expiry_seconds=expiry)
        resp.media = {"access_token": token, "token_type": token_type, "expires_in_seconds": expiry}


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/config", ConfigResource(ctx))
    app.add_route("/ui/auth/me", MeResource())
    app.add_route("/ui/auth/menus", MenusResource(ctx))
    app.add_route("/ui/auth/token", TokenResource(ctx))
