"""The git webhook: signature/token verified in constant time, a push makes the DAG bundle fetch now."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.api.conftest import ApiHarness

SECRET = "hook-secret-123"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()


@pytest.fixture
def hooked(api: ApiHarness) -> ApiHarness:
    api.ctx.config.server.webhook_secret = SECRET
    return api


def _sig(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(api: ApiHarness, headers: dict[str, str], body: bytes = PUSH) -> Any:
    return api.anon.simulate_post("/webhooks/git", body=body, headers={"Content-Type": "application/json", **headers})


def _count(provider: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("leoflow_api_webhook_events_total",
                                     {"provider": provider, "outcome": outcome}) or 0.0


def test_github_push_triggers_fetch(hooked: ApiHarness) -> None:
    before = _count("github", "triggered")
    resp = _post(hooked, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH)})
    assert resp.status_code == 202 and resp.json["ref"] == "refs/heads/main"
    assert hooked.sync.calls == 1
    assert _count("github", "triggered") == before + 1


def test_gitea_and_gitlab(hooked: ApiHarness) -> None:
    gitea = _post(hooked, {"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": _sig(PUSH)})
    assert gitea.status_code == 202 and gitea.json["provider"] == "gitea"
    gitlab = _post(hooked, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})
    assert gitlab.status_code == 202 and gitlab.json["provider"] == "gitlab"
    assert hooked.sync.calls == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Event": "push"},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH, "wrong")},
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": _sig(PUSH)},  # missing the sha256= prefix
        {"X-Gitea-Event": "push", "X-Gitea-Signature": "00"},
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"},
        {},
    ],
)
def test_bad_signature_is_401_and_logged(hooked: ApiHarness, headers: dict[str, str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="leoflow.api.webhook"):
        resp = _post(hooked, headers)
    assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert hooked.sync.calls == 0
    assert any("bad or missing signature" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_tampered_body_fails(hooked: ApiHarness) -> None:
    resp = _post(hooked, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH)},
                 body=PUSH.replace(b"main", b"evil"))
    assert resp.status_code == 401 and hooked.sync.calls == 0


def test_ping_other_events_and_other_branches(hooked: ApiHarness) -> None:
    ping = b'{"zen": "x"}'
    assert _post(hooked, {"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + _sig(ping)},
                 body=ping).json == {"status": "pong"}
    issue = b'{"action": "opened"}'
    resp = _post(hooked, {"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + _sig(issue)}, body=issue)
    assert resp.status_code == 200 and resp.json["status"] == "ignored"
    hooked.ctx.config.dags.ref = "release"
    resp = _post(hooked, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH)})
    assert resp.json["status"] == "ignored" and "release" in resp.json["reason"]
    assert hooked.sync.calls == 0


def test_disabled_without_secret(api: ApiHarness) -> None:
    resp = _post(api, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH, "")})
    assert resp.status_code == 404 and "webhook_secret" in resp.json["detail"]
    assert api.sync.calls == 0


def test_secret_file(api: ApiHarness, tmp_path: Any) -> None:
    path = tmp_path / "hook"
    path.write_text(SECRET + "\n")
    api.ctx.config.server.webhook_secret_file = str(path)
    resp = _post(api, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH)})
    assert resp.status_code == 202


def test_default_trigger_writes_the_fetch_request(tmp_path: Any) -> None:
    """Without an injected trigger, the webhook asks the DAG syncer through the store (its fetch key)."""
    from datetime import UTC, datetime

    from leoflow.api.context import build_context
    from leoflow.api.server import create_app
    from leoflow.config import Config
    from leoflow.store.sqlite import SqliteStore

    config = Config(home=str(tmp_path / "home"))
    config.auth.jwt_secret = "k" * 40
    config.server.webhook_secret = SECRET
    ctx = build_context(config, store=SqliteStore(tmp_path / "s.db"), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
                        projection=False)
    try:
        import falcon.testing

        before = ctx.repos.dags.fetch_request_index(config.dags.bundle_name)
        client = falcon.testing.TestClient(create_app(ctx))
        resp = client.simulate_post("/webhooks/git", body=PUSH, headers={
            "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sig(PUSH)})
        assert resp.status_code == 202
        assert ctx.repos.dags.fetch_request_index(config.dags.bundle_name) > before
    finally:
        ctx.close()
