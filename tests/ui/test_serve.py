"""Serving the bundle: base href, MIME types, caching, gzip, login app, SPA fallback and auth gate."""

from __future__ import annotations

import gzip
from pathlib import Path

import falcon
import falcon.testing
import pytest

from leoflow.api import problem
from leoflow.ui import bundle
from leoflow.ui.serve import UiBundle, normalize_base, safe_next


@pytest.fixture(scope="module")
def installed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not bundle.wheel_path().is_file():
        pytest.fail("the Airflow wheel is not cached: run `make setup` (leoflow ui install) first")
    home = tmp_path_factory.mktemp("home")
    bundle.install(home)
    return home


def _app(home: Path, base_url: str = "") -> falcon.App:
    app = falcon.App()
    problem.install(app)

    class Token:
        public = True

        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.status = falcon.HTTP_201
            resp.media = {"access_token": "t"}

    app.add_route("/auth/token", Token())

    def authenticate(req: falcon.Request) -> bool:
        return req.cookies.get("_token") == "good"

    UiBundle(home, base_url, authenticate).mount(app)
    return app


@pytest.fixture(scope="module")
def client(installed_home: Path) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(_app(installed_home))


def _asset(home: Path, suffix: str) -> str:
    return next(p.name for p in (bundle.ui_dist_dir(home) / "assets").iterdir() if p.name.endswith(suffix))


def test_anonymous_shell_redirects_to_login_with_next(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/dags/example/runs", query_string="state=failed")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/auth/login?next=%2Fdags%2Fexample%2Fruns%3Fstate%3Dfailed"
    root = client.simulate_get("/")
    assert root.status_code == 302 and root.headers["Location"] == "/auth/login?next=%2F"


def test_authenticated_shell_renders_base_href_and_is_not_cached(client: falcon.testing.TestClient) -> None:
    for path in ("/", "/dags", "/dags/x/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t"):
        resp = client.simulate_get(path, cookies={"_token": "good"})
        assert resp.status_code == 200, path
        assert resp.headers["content-type"].startswith("text/html")
        assert '<base href="/" />' in resp.text
        assert "{{" not in resp.text
        assert resp.headers["cache-control"] == "no-cache"
        assert './static/assets/index-' in resp.text


def test_base_url_prefix_is_rendered(installed_home: Path) -> None:
    c = falcon.testing.TestClient(_app(installed_home, "/leoflow"))
    resp = c.simulate_get("/dags", cookies={"_token": "good"})
    assert '<base href="/leoflow/" />' in resp.text
    login = c.simulate_get("/dags")
    assert login.headers["Location"].startswith("/leoflow/auth/login?next=")


def test_login_app_is_public_and_served_under_auth(client: falcon.testing.TestClient, installed_home: Path) -> None:
    resp = client.simulate_get("/auth/login", query_string="next=/dags")
    assert resp.status_code == 200
    assert '<base href="/" />' in resp.text and "./auth/static/assets/" in resp.text
    js = next((bundle.auth_dist_dir(installed_home) / "assets").glob("*.js")).name
    asset = client.simulate_get(f"/auth/static/assets/{js}")
    assert asset.status_code == 200
    assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
    # The API route wins over the /auth sink.
    assert client.simulate_post("/auth/token", json={}).status_code == 201
    assert client.simulate_post("/auth/login").status_code == 405


@pytest.mark.parametrize(
    ("suffix", "ctype"),
    [(".js", "text/javascript; charset=utf-8"), (".css", "text/css; charset=utf-8"),
     (".wasm", "application/wasm"), (".ttf", "font/ttf")],
)
def test_static_mime_types_and_immutable_caching(client: falcon.testing.TestClient, installed_home: Path,
                                                 suffix: str, ctype: str) -> None:
    name = _asset(installed_home, suffix)
    resp = client.simulate_get(f"/static/assets/{name}", query_string="v=3.3.2")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == ctype
    assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.content == (bundle.ui_dist_dir(installed_home) / "assets" / name).read_bytes()


def test_i18n_json_and_png(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/static/i18n/locales/en/common.json", query_string="v=3.3.2")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "public, max-age=3600"
    assert isinstance(resp.json, dict)
    png = client.simulate_get("/static/pin_32.png")
    assert png.headers["content-type"] == "image/png"


def test_etag_revalidation_and_gzip(client: falcon.testing.TestClient, installed_home: Path) -> None:
    name = _asset(installed_home, ".css")
    first = client.simulate_get(f"/static/assets/{name}")
    etag = first.headers["etag"]
    again = client.simulate_get(f"/static/assets/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    big = next(p for p in (bundle.ui_dist_dir(installed_home) / "assets").glob("index-*.js"))
    gz = client.simulate_get(f"/static/assets/{big.name}", headers={"Accept-Encoding": "gzip, deflate"})
    assert gz.headers["content-encoding"] == "gzip"
    assert len(gz.content) < big.stat().st_size / 2
    assert gzip.decompress(gz.content) == big.read_bytes()
    plain = client.simulate_get(f"/static/assets/{big.name}", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in plain.headers
    head = client.simulate_head(f"/static/assets/{name}")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("path", ["/static/../BUNDLE", "/static/assets/../../BUNDLE", "/static/nope.js",
                                  "/static/.vite/manifest.json", "/static/"])
def test_static_refuses_traversal_hidden_and_missing(client: falcon.testing.TestClient, path: str) -> None:
    resp = client.simulate_get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_reserved_prefixes_never_get_the_shell(client: falcon.testing.TestClient) -> None:
    for path in ("/api/v2/nope", "/ui/nope", "/api", "/metrics/x", "/leoflow/nope"):
        resp = client.simulate_get(path, cookies={"_token": "good"})
        assert resp.status_code == 404, path
        assert resp.json["detail"].startswith("no such endpoint")
    assert client.simulate_post("/dags", cookies={"_token": "good"}).status_code == 405


def test_missing_bundle_says_how_to_install(tmp_path: Path) -> None:
    c = falcon.testing.TestClient(_app(tmp_path / "empty-home"))
    for path in ("/dags", "/static/assets/x.js", "/auth/login"):
        resp = c.simulate_get(path, cookies={"_token": "good"})
        assert resp.status_code == 503, path
        assert "leoflow ui install" in resp.json["detail"]


def test_helpers() -> None:
    assert normalize_base("") == "/" and normalize_base("/") == "/"
    assert normalize_base("leoflow") == "/leoflow/" and normalize_base("/a/b/") == "/a/b/"
    assert normalize_base("https://x.example/air/") == "/air/"
    assert safe_next("//evil.example/x") == "/evil.example/x"
    assert safe_next("/dags", "a=1") == "/dags?a=1"
