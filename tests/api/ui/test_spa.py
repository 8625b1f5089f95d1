"""The bundle mounted on the real leoflow-server app: the auth gate uses the API's own rules."""

from __future__ import annotations

import pytest

from leoflow.ui import bundle
from tests.api.conftest import ApiHarness


@pytest.fixture
def installed(api: ApiHarness) -> ApiHarness:
    bundle.install(api.ctx.config.home_path)
    return api


def test_anonymous_shell_goes_to_login_and_a_session_gets_the_app(installed: ApiHarness) -> None:
    anon = installed.anon.simulate_get("/dags/etl/runs")
    assert anon.status_code == 302 and anon.headers["location"] == "/auth/login?next=%2Fdags%2Fetl%2Fruns"
    login = installed.anon.simulate_get("/auth/login", query_string="next=/dags")
    assert login.status_code == 200 and "./auth/static/assets/" in login.text
    token = installed.token("viewer")
    with_cookie = installed.anon.simulate_get("/dags/etl/runs", cookies={"_token": token})
    assert with_cookie.status_code == 200 and '<base href="/" />' in with_cookie.text
    with_bearer = installed.client("viewer").simulate_get("/")
    assert with_bearer.status_code == 200


def test_bad_or_expired_cookie_goes_to_login(installed: ApiHarness) -> None:
    token = installed.token("viewer")
    bad = installed.anon.simulate_get("/dags", cookies={"_token": token[:-4] + "AAAA"})
    assert bad.status_code == 302
    installed.clock.advance(seconds=installed.ctx.config.auth.token_expiry_seconds + 1)
    expired = installed.anon.simulate_get("/dags", cookies={"_token": token})
    assert expired.status_code == 302 and expired.headers["location"].startswith("/auth/login?next=")


def test_api_routes_win_over_the_sinks(installed: ApiHarness) -> None:
    assert installed.anon.simulate_get("/api/v2/nope").status_code in (401, 404)
    assert installed.anon.simulate_get("/ui/nope").status_code in (401, 404)
    assert installed.anon.simulate_get("/health/live").status_code == 200
    assert installed.anon.simulate_get("/static/pin_32.png").headers["content-type"] == "image/png"
    token = installed.anon.simulate_post("/auth/token", json={"username": "nobody", "password": "x"})
    assert token.status_code in (400, 401, 403) and token.headers["content-type"] == "application/problem+json"


def test_missing_bundle_is_a_clear_503(api: ApiHarness) -> None:
    result = api.client("viewer").simulate_get("/dags")
    assert result.status_code == 503
    assert "leoflow ui install" in result.json["detail"]
