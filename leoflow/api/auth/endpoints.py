"""Login, logout and token endpoints, as the Airflow UI and its simple-auth login app call them.

Flow (``airflow-ui.md`` §2): any 401 makes the UI navigate to ``/api/v2/auth/login?next=<path>``,
which answers 307 to the login app at ``<base>auth/login?next=...`` (served by the UI module). The
login app POSTs ``{"username", "password"}`` as JSON to ``/auth/token`` and expects
``201 {"access_token"}``; it then sets the ``_token`` cookie itself and navigates to ``next``.
``/api/v2/auth/logout`` revokes every presented token, clears the cookie and 307s to the login app.

``next`` must be a same-site target: a path starting with one ``/`` (not ``//`` or ``/\\``) or an
absolute http(s) URL whose host is this server's; anything else is a 400 (Airflow's ``is_safe_url``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import falcon

from leoflow.api import problem
from leoflow.api.auth.passwords import verify_dummy, verify_password
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.middleware import COOKIE_NAME, presented_tokens
from leoflow.api.observe import AUTH_FAILURES

log = logging.getLogger("leoflow.api.auth")

_MAX_CREDENTIAL_BYTES = 16 * 1024


def is_safe_next(target: str, req: falcon.Request) -> bool:
    if not target or any(ord(c) < 32 for c in target) or "\\" in target:
        return False
    parts = urlsplit(target)
    if not parts.scheme and not parts.netloc:
        return target.startswith("/") and not target.startswith("//")
    if parts.scheme not in ("http", "https"):
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return (parts.hostname or "").lower() == req.host.lower() and port == req.port


def _read_credentials(req: falcon.Request) -> tuple[str, str]:
    ctype = (req.content_type or "").split(";")[0].strip().lower()
    if req.content_length is not None and req.content_length > _MAX_CREDENTIAL_BYTES:
        raise problem.Problem(413, "credentials body too large", type_="payload-too-large")
    raw = req.bounded_stream.read(_MAX_CREDENTIAL_BYTES + 1)
    if len(raw) > _MAX_CREDENTIAL_BYTES:
        raise problem.Problem(413, "credentials body too large", type_="payload-too-large")
    data: Any
    if ctype == "application/json":
        try:
            data = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise problem.bad_request("malformed JSON body", field="body") from None
    elif ctype == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise problem.bad_request("form body is not valid UTF-8", field="body") from None
        data = {k: v[0] for k, v in form.items()}
    else:
        raise problem.Problem(415, f"expected application/json or a form, got {ctype or 'no content type'}",
                              type_="unsupported-media-type")
    if not isinstance(data, dict):
        raise problem.bad_request("Username and password must be provided", field="body")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise problem.bad_request("Username and password must be provided", field="body")
    return username.strip(), password


class TokenResource:
    """``POST /auth/token`` (and ``/auth/token/cli``): credentials in, a JWT out (201)."""

    public = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        client = req.remote_addr or "unknown"
        wait = self.ctx.login_limiter.retry_after(client)
        if wait is not None:
            AUTH_FAILURES.labels("rate_limited").inc()
            log.warning("login rate limited", extra={"remote": client, "request_id": req.context.request_id})
            raise problem.Problem(429, f"Too many failed login attempts; retry in {wait} s",
                                  type_="too-many-requests", headers={"Retry-After": str(wait)})
        username, password = _read_credentials(req)
        found = self.ctx.repos.users.get(username)
        user = found.record if found is not None else None
        ok = False
        if user is None or not user.active:
            verify_dummy(password)
        else:
            ok = verify_password(password, user.password_hash)
        if not ok or user is None:
            self.ctx.login_limiter.failure(client)
            AUTH_FAILURES.labels("bad_credentials").inc()
            log.info("login failed", extra={"user": username, "remote": client, "request_id": req.context.request_id})
            raise problem.Problem(401, "Invalid credentials", type_="unauthorized")
        try:
            role = Role.parse(user.role).label
        except ValueError:
            raise problem.Problem(403, f"user {username!r} has no valid role", type_="forbidden") from None
        resp.status = falcon.HTTP_201
        resp.media = {"access_token": self.ctx.tokens.issue(user.username, role)}
        resp.set_header("Cache-Control", "no-store")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Airflow answers GET /auth/token only in all-admins mode, which Leoflow never has.
        raise problem.forbidden("token without credentials is only available in all-admins mode, "
                                "which Leoflow does not offer; POST credentials instead")


def login_url(ctx: AppContext) -> str:
    return ctx.cookie_path + "auth/login"


class LoginResource:
    """``GET /api/v2/auth/login?next=``: 307 to the login app, keeping a safe ``next``."""

    public = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        target = req.get_param("next")
        location = login_url(self.ctx)
        if target:
            if not is_safe_next(target, req):
                raise problem.bad_request("Invalid or unsafe next URL", field="query.next")
            location += "?next=" + quote(target, safe="")
        resp.status = falcon.HTTP_307
        resp.location = location
        resp.set_header("Cache-Control", "no-store")


class LogoutResource:
    """``GET /api/v2/auth/logout``: revoke presented tokens, clear the cookie, back to login."""

    public = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tokens_repo = getattr(self.ctx.repos, "tokens", None)
        for token in presented_tokens(req):
            try:
                claims = self.ctx.tokens.verify(token)
            except Exception:  # noqa: S112 - an invalid or expired token needs no revocation
                continue
            if tokens_repo is not None:
                tokens_repo.revoke(claims.jti, claims.expires_at)
            log.info("logout", extra={"user": claims.username, "request_id": req.context.request_id})
        resp.unset_cookie(COOKIE_NAME, path=self.ctx.cookie_path)
        if self.ctx.cookie_path != "/":
            resp.unset_cookie(COOKIE_NAME, path="/")
        resp.status = falcon.HTTP_307
        resp.location = login_url(self.ctx)
        resp.set_header("Cache-Control", "no-store")


def register(app: falcon.App, ctx: AppContext) -> None:
    token = TokenResource(ctx)
    app.add_route("/auth/token", token)
    app.add_route("/auth/token/cli", token)
    app.add_route("/api/v2/auth/login", LoginResource(ctx))
    app.add_route("/api/v2/auth/logout", LogoutResource(ctx))
