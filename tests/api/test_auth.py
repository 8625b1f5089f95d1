"""Authentication as the Airflow UI drives it: login redirect, token, cookie, bearer, expiry,
rate limiting, logout revocation, open-redirect safety."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from leoflow.api.auth.passwords import hash_password
from tests.api.conftest import PASSWORD, ApiHarness
from tests.spec_validation import assert_spec


def _login(api: ApiHarness, username: str, password: str = PASSWORD, **kw: Any) -> Any:
    return api.anon.simulate_post("/auth/token", json={"username": username, "password": password}, **kw)


def test_login_flow_like_the_ui(api: ApiHarness) -> None:
    api.add_user("alice", "user")
    anon = api.anon
    # 1. the UI's first call without a cookie: 401 "Not authenticated" (it then navigates to login)
    denied = anon.simulate_get("/api/v2/dags")
    assert denied.status_code == 401 and denied.json["detail"] == "Not authenticated"
    # 2. /api/v2/auth/login?next=... -> 307 to the login app, next kept and encoded
    redirect = anon.simulate_get("/api/v2/auth/login", query_string="next=%2Fdags%3Fa%3D1%23x")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/auth/login?next=%2Fdags%3Fa%3D1%23x"
    # 3. the login app posts JSON credentials -> 201 {access_token}
    token = _login(api, "alice")
    assert token.status_code == 201
    body = assert_spec(token, "POST", "/auth/token")
    assert set(body) == {"access_token"}
    # 4. it sets the _token cookie itself; the UI sends only the cookie
    ok = anon.simulate_get("/api/v2/dags", cookies={"_token": body["access_token"]})
    assert ok.status_code == 200
    # 5. bearer works too (scripts, airflow-client)
    ok = anon.simulate_get("/api/v2/dags", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200


def test_login_accepts_form_and_rejects_bad_requests(api: ApiHarness) -> None:
    api.add_user("bob", "viewer")
    form = api.anon.simulate_post("/auth/token", body=f"username=bob&password={PASSWORD.replace(' ', '+')}",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 201
    missing = api.anon.simulate_post("/auth/token", json={"username": "bob"})
    assert missing.status_code == 400 and missing.json["detail"] == "Username and password must be provided"
    assert_spec(missing, "POST", "/auth/token")
    wrong_type = api.anon.simulate_post("/auth/token", json={"username": "bob", "password": 123})
    assert wrong_type.status_code == 400
    text = api.anon.simulate_post("/auth/token", body="bob", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.headers["content-type"] == "application/problem+json"
    malformed = api.anon.simulate_post("/auth/token", body="{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    bad = _login(api, "bob", "wrong")
    assert bad.status_code == 401 and bad.json["detail"] == "Invalid credentials"
    assert_spec(bad, "POST", "/auth/token")
    assert _login(api, "nobody").status_code == 401  # same answer as a wrong password


def test_get_token_without_credentials_is_forbidden(api: ApiHarness) -> None:
    assert api.anon.simulate_get("/auth/token").status_code == 403


def test_inactive_user_cannot_log_in_or_use_old_tokens(api: ApiHarness) -> None:
    api.add_user("carol", "op")
    token = _login(api, "carol").json["access_token"]
    old = api.repos.users.get("carol")
    import dataclasses

    api.repos.users.update(old, dataclasses.replace(old.record, active=False))
    assert _login(api, "carol").status_code == 401
    resp = api.anon.simulate_get("/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403 and resp.json["detail"] == "Invalid JWT token"


def test_role_is_read_from_the_store_not_the_token(api: ApiHarness) -> None:
    api.seed_dag("etl")
    api.add_user("dave", "user")
    token = _login(api, "dave").json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert api.anon.simulate_patch("/api/v2/dags/etl", json={"is_paused": True}, headers=headers).status_code == 200
    import dataclasses

    old = api.repos.users.get("dave")
    api.repos.users.update(old, dataclasses.replace(old.record, role="viewer"))
    denied = api.anon.simulate_patch("/api/v2/dags/etl", json={"is_paused": False}, headers=headers)
    assert denied.status_code == 403 and denied.json["detail"] == "Forbidden"
    api.repos.users.delete("dave")
    gone = api.anon.simulate_get("/api/v2/dags", headers=headers)
    assert gone.status_code == 403 and gone.json["detail"] == "Invalid JWT token"


def test_expired_token_is_401_and_clears_the_cookie(api: ApiHarness) -> None:
    api.add_user("erin", "viewer")
    token = _login(api, "erin").json["access_token"]
    api.clock.advance(seconds=api.ctx.config.auth.token_expiry_seconds + 1)
    resp = api.anon.simulate_get("/api/v2/dags", cookies={"_token": token})
    assert resp.status_code == 401 and resp.json["detail"] == "Token Expired"
    cleared = resp.cookies["_token"]
    assert cleared.value == "" and cleared.expires is not None and cleared.expires <= datetime.now(UTC)
    resp = api.anon.simulate_get("/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_invalid_token_is_403_invalid_jwt(api: ApiHarness) -> None:
    for token in ("garbage", api.ctx.tokens.issue("admin-user", "admin")[:-3] + "abc"):
        resp = api.anon.simulate_get("/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 403 and resp.json["detail"] == "Invalid JWT token"
        assert resp.headers["content-type"] == "application/problem+json"


def test_stale_bearer_falls_back_to_good_cookie(api: ApiHarness) -> None:
    api.add_user("frank", "viewer")
    good = _login(api, "frank").json["access_token"]
    resp = api.anon.simulate_get("/api/v2/dags", headers={"Authorization": "Bearer stale"}, cookies={"_token": good})
    assert resp.status_code == 200


def test_rate_limit_on_failed_logins(api: ApiHarness) -> None:
    api.add_user("gina", "viewer")
    limit = api.ctx.config.auth.login_rate_limit_per_minute
    for _ in range(limit):
        assert _login(api, "gina", "nope").status_code == 401
    blocked = _login(api, "gina")  # even the right password waits out the window
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert blocked.headers["content-type"] == "application/problem+json"
    other_ip = _login(api, "gina", remote_addr="10.9.9.9")
    assert other_ip.status_code == 201
    api.clock.advance(seconds=61)
    assert _login(api, "gina").status_code == 201


def test_successful_logins_do_not_consume_the_budget(api: ApiHarness) -> None:
    api.add_user("hank", "viewer")
    for _ in range(api.ctx.config.auth.login_rate_limit_per_minute + 3):
        assert _login(api, "hank").status_code == 201


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http://localhost:9/x",
     "\t/x", "ftp://falconframework.org/"],
)
def test_login_rejects_unsafe_next(api: ApiHarness, target: str) -> None:
    resp = api.anon.simulate_get("/api/v2/auth/login", params={"next": target})
    assert resp.status_code == 400 and resp.json["field"] == "query.next"
    assert "location" not in resp.headers


def test_login_accepts_same_host_absolute_next(api: ApiHarness) -> None:
    resp = api.anon.simulate_get("/api/v2/auth/login", params={"next": "http://falconframework.org/dags"})
    assert resp.status_code == 307
    assert resp.headers["location"] == "/auth/login?next=http%3A%2F%2Ffalconframework.org%2Fdags"
    plain = api.anon.simulate_get("/api/v2/auth/login")
    assert plain.status_code == 307 and plain.headers["location"] == "/auth/login"


def test_logout_revokes_and_clears_cookie(api: ApiHarness) -> None:
    api.add_user("ivy", "viewer")
    token = _login(api, "ivy").json["access_token"]
    out = api.anon.simulate_get("/api/v2/auth/logout", cookies={"_token": token})
    assert out.status_code == 307 and out.headers["location"] == "/auth/login"
    assert out.cookies["_token"].value == ""
    after = api.anon.simulate_get("/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 403 and after.json["detail"] == "Invalid JWT token"
    # logging out without a token is harmless
    assert api.anon.simulate_get("/api/v2/auth/logout").status_code == 307


def test_base_url_sets_cookie_path_and_login_url(tmp_path: Any) -> None:
    from leoflow.config import Config
    from tests.api.conftest import make_harness

    config = Config()
    config.server.base_url = "https://example.org/leoflow"
    api = make_harness(tmp_path, config)
    try:
        assert api.ctx.cookie_path == "/leoflow/"
        resp = api.anon.simulate_get("/api/v2/auth/login", params={"next": "/leoflow/dags"})
        assert resp.headers["location"] == "/leoflow/auth/login?next=%2Fleoflow%2Fdags"
    finally:
        api.ctx.close()


def test_password_hash_parameters_come_from_the_hash(api: ApiHarness) -> None:
    api.add_user("judy", "admin", password_hash=hash_password("another-pass", n=2**9))
    assert _login(api, "judy", "another-pass").status_code == 201


def test_every_non_public_route_requires_auth(api: ApiHarness) -> None:
    """Walk the router: anything not explicitly public answers 401 without credentials."""
    from leoflow.api.auth.roles import required_role

    public = {"/health/live", "/health/ready", "/api/v2/monitor/health", "/metrics", "/auth/token",
              "/auth/token/cli", "/api/v2/auth/login", "/api/v2/auth/logout", "/webhooks/git", "/api/v2/version"}
    checked = 0
    for template, resource in _routes(api):
        if required_role(resource, "GET") is None:
            assert template in public or template.startswith(("/auth/", "/static")), template
            continue
        if not hasattr(resource, "on_get"):
            continue
        path = template.replace("{", "").replace("}", "")
        resp = api.anon.simulate_get(path)
        assert resp.status_code == 401, (template, resp.status_code, resp.text)
        assert json.loads(resp.text)["detail"] == "Not authenticated"
        checked += 1
    assert checked > 20


def _routes(api: ApiHarness) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []

    def walk(nodes: Any) -> None:
        for node in nodes:
            if node.resource is not None:
                out.append((node.uri_template, node.resource))
            walk(node.children)

    walk(api.app._router._roots)
    return out
