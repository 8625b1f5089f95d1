"""Mounts the Airflow UI bundle (static files, login app, SPA shell) on leoflow-server.

Registered last (``ORDER``) because it adds the catch-all sink; Falcon tries routes before
sinks anyway, so every API route still wins.
"""

from __future__ import annotations

import falcon

from leoflow.api.context import AppContext
from leoflow.api.middleware import AuthMiddleware
from leoflow.ui.serve import UiBundle

ORDER = 1000


def register(app: falcon.App, ctx: AppContext) -> None:
    auth = AuthMiddleware(ctx)

    def authenticated(req: falcon.Request) -> bool:
        # Same rules as every API call (bearer, then the _token cookie, expiry, revocation, user
        # still active), so the shell never loads for someone the API would then refuse.
        try:
            req.context.user = auth.authenticate(req)
        except falcon.HTTPError:
            return False
        return True

    UiBundle(ctx.config.home_path, ctx.config.server.base_url, authenticated).mount(app)
