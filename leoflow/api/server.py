"""The Falcon application of leoflow-server.

``create_app(ctx)`` installs the middleware and the problem-details error handling, registers the
core routes (health, metrics, auth, webhook) and then *discovers* every module in
``leoflow/api/public/`` and ``leoflow/api/ui/`` that defines ``register(app, ctx)``. So adding an
endpoint module never means editing this file.

Contract for an endpoint module::

    # leoflow/api/public/pools.py
    from leoflow.api.auth.roles import Role

    class PoolCollection:
        roles = {"GET": Role.VIEWER, "POST": Role.OP}   # see leoflow/api/auth/roles.py
        def __init__(self, ctx): self.ctx = ctx
        def on_get(self, req, resp): ...

    def register(app, ctx):
        app.add_route("/api/v2/pools", PoolCollection(ctx))

Modules are registered in name order; a module may set ``ORDER = <int>`` (default 100) to go
earlier or later (e.g. a UI catch-all sink registers last). A module that fails to import or
register stops the server with an error naming it: a half-registered API is worse than none.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from types import ModuleType
from typing import Any

import falcon
import falcon.media

from leoflow.api import health, observe, problem, webhook
from leoflow.api.auth import endpoints as auth_endpoints
from leoflow.api.context import AppContext
from leoflow.api.middleware import AuthMiddleware, Observe, RequestContext

DISCOVERED_PACKAGES = ("leoflow.api.public", "leoflow.api.ui")


class DiscoveryError(RuntimeError):
    pass


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def discover(packages: tuple[str, ...] = DISCOVERED_PACKAGES) -> list[ModuleType]:
    modules: list[ModuleType] = []
    for package_name in packages:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            name = f"{package_name}.{info.name}"
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                raise DiscoveryError(f"cannot import API module {name}: {exc}") from exc
            if callable(getattr(module, "register", None)):
                modules.append(module)
    modules.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    return modules


def create_app(ctx: AppContext) -> falcon.App:
    app = falcon.App(
        middleware=[RequestContext(ctx), Observe(ctx), AuthMiddleware(ctx)],
        cors_enable=False,
    )
    app.req_options.keep_blank_qs_values = True  # ``cursor=`` must be seen (cursor mode)
    app.req_options.auto_parse_qs_csv = False  # repeated keys, never comma splitting
    app.req_options.strip_url_path_trailing_slash = False
    json_handler = falcon.media.JSONHandler(dumps=_dumps)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    problem.install(app)

    health.register(app, ctx)
    app.add_route("/metrics", observe.MetricsResource())
    auth_endpoints.register(app, ctx)
    webhook.register(app, ctx)
    for module in discover():
        try:
            module.register(app, ctx)
        except Exception as exc:
            raise DiscoveryError(f"API module {module.__name__} failed to register: {exc}") from exc
    return app
