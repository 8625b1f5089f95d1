"""``POST /webhooks/git``: a push to the DAG repository makes the bundle fetch at once.

Verified before anything else, in constant time:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``;
* Gitea (and Forgejo): ``X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>`` (Gitea also sends
  GitHub's headers; its own are checked first);
* GitLab: ``X-Gitlab-Token: <secret>`` (GitLab sends a shared token, not a signature).

The secret is ``[server] webhook_secret`` or ``webhook_secret_file``; with neither set the
endpoint is disabled (404), so an unconfigured server can never be driven from outside. A bad or
missing signature is 401 and logged with the remote address. A push to a branch other than
``[dags] ref`` (when that is a branch name) is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

import falcon

from leoflow.api import problem
from leoflow.api.context import AppContext
from leoflow.api.observe import WEBHOOK_EVENTS

log = logging.getLogger("leoflow.api.webhook")

_MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB, pushes are usually tiny


def webhook_secret(ctx: AppContext) -> bytes | None:
    server = ctx.config.server
    if server.webhook_secret:
        return server.webhook_secret.encode()
    if server.webhook_secret_file:
        try:
            value = Path(server.webhook_secret_file).read_bytes().strip()
        except OSError:
            log.error("webhook secret file unreadable", extra={"path": server.webhook_secret_file})
            return None
        return value or None
    return None


def _provider(req: falcon.Request) -> tuple[str, str]:
    if req.get_header("X-Gitea-Event"):
        return "gitea", req.get_header("X-Gitea-Event") or ""
    if req.get_header("X-Gitlab-Event"):
        return "gitlab", req.get_header("X-Gitlab-Event") or ""
    if req.get_header("X-GitHub-Event"):
        return "github", req.get_header("X-GitHub-Event") or ""
    return "unknown", ""


def _hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(provider: str, req: falcon.Request, secret: bytes, body: bytes) -> bool:
    if provider == "github":
        header = req.get_header("X-Hub-Signature-256") or ""
        expected = "sha256=" + _hmac_hex(secret, body)
        return hmac.compare_digest(header.strip().encode(), expected.encode())
    if provider == "gitea":
        header = (req.get_header("X-Gitea-Signature") or "").strip()
        return hmac.compare_digest(header.encode(), _hmac_hex(secret, body).encode())
    if provider == "gitlab":
        header = (req.get_header("X-Gitlab-Token") or "").strip()
        return hmac.compare_digest(header.encode(), secret)
    return False


def _is_push(provider: str, event: str) -> bool:
    if provider == "gitlab":
        return event in ("Push Hook", "Tag Push Hook", "System Hook")
    return event == "push"


class GitWebhookResource:
    public = True  # authenticated by signature, not by a user token

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        secret = webhook_secret(self.ctx)
        if secret is None:
            raise problem.not_found("the git webhook is disabled; set [server] webhook_secret to enable it")
        provider, event = _provider(req)
        body = req.bounded_stream.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            raise problem.Problem(413, f"webhook body exceeds {_MAX_BODY} bytes", type_="payload-too-large")
        if not verify(provider, req, secret, body):
            WEBHOOK_EVENTS.labels(provider, "bad_signature").inc()
            log.warning("webhook rejected: bad or missing signature",
                        extra={"provider": provider, "remote": req.remote_addr, "request_id": req.context.request_id})
            raise problem.Problem(401, "webhook signature or token is missing or invalid", type_="unauthorized")
        if provider == "github" and event == "ping":
            WEBHOOK_EVENTS.labels(provider, "ping").inc()
            resp.media = {"status": "pong"}
            return
        if not _is_push(provider, event):
            WEBHOOK_EVENTS.labels(provider, "ignored").inc()
            resp.media = {"status": "ignored", "reason": f"event {event!r} is not a push"}
            return
        ref = _ref(body)
        wanted = self.ctx.config.dags.ref
        if ref and wanted and wanted != "HEAD" and ref.startswith("refs/heads/") and ref != f"refs/heads/{wanted}":
            WEBHOOK_EVENTS.labels(provider, "ignored").inc()
            resp.media = {"status": "ignored", "reason": f"push to {ref}, DAGs follow {wanted}"}
            return
        if self.ctx.dag_sync is None:
            WEBHOOK_EVENTS.labels(provider, "no_syncer").inc()
            raise problem.Problem(503, "this server has no DAG syncer to trigger", type_="unavailable")
        self.ctx.dag_sync()
        WEBHOOK_EVENTS.labels(provider, "triggered").inc()
        log.info("webhook triggered a DAG fetch", extra={"provider": provider, "ref": ref,
                                                          "request_id": req.context.request_id})
        resp.status = falcon.HTTP_202
        resp.media = {"status": "accepted", "provider": provider, "ref": ref}


def _ref(body: bytes) -> str | None:
    try:
        doc: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    ref = doc.get("ref") if isinstance(doc, dict) else None
    return ref if isinstance(ref, str) else None


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/webhooks/git", GitWebhookResource(ctx))
