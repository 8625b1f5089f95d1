"""Cross-cutting request handling: request id, authentication/authorization, access log, metrics, spans.

Order matters and is fixed in ``server.create_app``: ``RequestContext`` first (so every later
log line and problem carries the request id), then ``Observe`` (timing covers auth), then
``AuthMiddleware`` (which needs the routed resource to know the role it requires).

Authentication (Airflow's rules, ``airflow-ui.md`` §2.1): ``Authorization: Bearer`` wins when it
is present and valid; otherwise the ``_token`` cookie (the UI only ever sends the cookie; a stale
bearer after a page refresh must not hide a good cookie). Missing → 401 "Not authenticated";
expired → 401 "Token Expired" (and the cookie is cleared); invalid → 403 "Invalid JWT token" (the
UI redirects to login on exactly that string); role too low → 403 "Forbidden".
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import falcon
from opentelemetry import trace

from leoflow.api import problem
from leoflow.api.auth.roles import Role, required_role
from leoflow.api.auth.tokens import TokenExpired, TokenInvalid
from leoflow.api.observe import AUTH_FAILURES, LATENCY, REQUESTS

if TYPE_CHECKING:
    from leoflow.api.context import AppContext

access_log = logging.getLogger("leoflow.api.access")
log = logging.getLogger("leoflow.api")

COOKIE_NAME = "_token"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    token_jti: str | None = None


class RequestContext:
    """Gives each request an id (a sane incoming ``X-Request-ID`` is kept) and the app context."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-ID")
        req.context.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        req.context.app_ctx = self.ctx
        req.context.user = None
        resp.set_header("X-Request-ID", req.context.request_id)
        limit = self.ctx.config.server.max_body_bytes
        if req.content_length is not None and req.content_length > limit:
            raise problem.Problem(413, f"request body is {req.content_length} bytes; the limit is {limit}",
                                  type_="payload-too-large")


class Observe:
    """Structured access log, request metrics and a server span per request."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        tracer = self.ctx.tracer
        if not isinstance(tracer, trace.NoOpTracer):
            span = tracer.start_span(f"{req.method} {req.path}", kind=trace.SpanKind.SERVER,
                                     attributes={"http.request.method": req.method, "url.path": req.path,
                                                 "leoflow.request_id": req.context.request_id})
            req.context.span = span
            req.context.span_token = trace.context_api.attach(trace.set_span_in_context(span))

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        elapsed = time.perf_counter() - getattr(req.context, "started", time.perf_counter())
        route = req.uri_template or ("<sink>" if resource is None and resp.status_code < 400 else "<unmatched>")
        status = resp.status_code
        method = req.method if req.method in _METHODS else "OTHER"  # bounded label values
        REQUESTS.labels(method, route, str(status)).inc()
        LATENCY.labels(method, route).observe(elapsed)
        span = getattr(req.context, "span", None)
        if span is not None:
            span.update_name(f"{req.method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
            trace.context_api.detach(req.context.span_token)
        if self.ctx.config.server.access_log:
            user = getattr(req.context, "user", None)
            access_log.info(
                "request",
                extra={
                    "request_id": req.context.request_id,
                    "method": req.method,
                    "route": route,
                    "path": req.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "user": user.username if user else None,
                    "remote": req.remote_addr,
                },
            )


def presented_tokens(req: falcon.Request) -> list[str]:
    """Bearer first, then the cookie (both may be present and differ)."""
    out: list[str] = []
    header = req.get_header("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            out.append(value.strip())
    cookie = (req.cookies.get(COOKIE_NAME) or "").strip()
    if cookie and cookie not in out:
        out.append(cookie)
    return out


class AuthMiddleware:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def authenticate(self, req: falcon.Request) -> Principal:
        tokens = presented_tokens(req)
        if not tokens:
            AUTH_FAILURES.labels("missing").inc()
            raise problem.unauthorized("Not authenticated")
        expired = False
        for token in tokens:
            try:
                claims = self.ctx.tokens.verify(token)
            except TokenExpired:
                expired = True
                continue
            except TokenInvalid:
                continue
            if self.ctx.is_revoked(claims.jti):
                continue
            found = self.ctx.repos.users.cached(claims.username)
            user = found.record if found is not None else None
            if user is None or not user.active:
                continue
            try:
                role = Role.parse(user.role)
            except ValueError:
                continue
            return Principal(username=user.username, role=role, token_jti=claims.jti)
        if expired:
            AUTH_FAILURES.labels("expired").inc()
            raise problem.Problem(401, "Token Expired", type_="unauthorized",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        AUTH_FAILURES.labels("invalid").inc()
        raise problem.Problem(403, "Invalid JWT token", type_="invalid-token")

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        if req.method == "OPTIONS":
            return
        needed = required_role(resource, req.method, req)
        if needed is None:
            return
        principal = self.authenticate(req)
        req.context.user = principal
        if principal.role < needed:
            AUTH_FAILURES.labels("forbidden").inc()
            log.info("forbidden", extra={"request_id": req.context.request_id, "user": principal.username,
                                         "role": principal.role.label, "needed": needed.label,
                                         "route": req.uri_template, "method": req.method})
            raise problem.forbidden("Forbidden")

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        # An expired cookie is cleared so the next request is a clean 401 (Airflow's JWTRefreshMiddleware).
        if resp.status_code == 401 and req.cookies.get(COOKIE_NAME):
            resp.unset_cookie(COOKIE_NAME, path=self.ctx.cookie_path)


def current_user(req: falcon.Request) -> Principal:
    """The authenticated principal; only call from a non-public responder."""
    user = getattr(req.context, "user", None)
    if user is None:  # a public resource asked for a user: treat as unauthenticated
        raise problem.unauthorized()
    return user  # type: ignore[no-any-return]
