"""Serving the unmodified Airflow UI bundle from ``$LEOFLOW_HOME/ui`` on a Falcon app.

What the bundle needs from a server (research/airflow-ui.md §1, leoflow-lessons §3.2/3.3):

* ``index.html`` with its one Jinja placeholder, ``{{ backend_server_base_url }}``, replaced by the
  base path; every URL the app computes derives from ``<base href>``. Never cached.
* ``/static/*`` (main app) and ``/auth/static/*`` (simple-auth login app) with exact MIME types:
  module scripts are rejected unless ``text/javascript``; ``.wasm`` must be ``application/wasm``.
  Content-hashed ``assets/*`` are cached for a year; the rest for an hour; ETag/304 everywhere;
  gzip when the client accepts it (precompressed once per file and kept in memory).
* The login app's index for ``/auth/...`` GETs that are not API routes.
* The SPA fallback: any other GET that is not an API path returns the index, but only to an
  authenticated visitor. An anonymous one is redirected to the login page first, so the app never
  mounts, fires 401s and flashes before the client-side redirect.

Routes are checked before sinks in Falcon, so the API's own routes (``POST /auth/token``,
``/api/v2/...``) always win over the sinks registered here.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import falcon

from leoflow.api.problem import Problem
from leoflow.ui import bundle

log = logging.getLogger("leoflow.ui.serve")

PLACEHOLDER = "{{ backend_server_base_url }}"

# Exact types; Python's mimetypes table depends on the host (/etc/mime.types) and lacks some.
MIME_TYPES: dict[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
}
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".json", ".map", ".html", ".txt", ".svg", ".wasm", ".ttf"})
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=3600"
NO_CACHE = "no-cache"
GZIP_MIN_BYTES = 1024

# Path prefixes the SPA fallback must never answer: the APIs and the server's own endpoints.
RESERVED_PREFIXES = ("/api", "/ui", "/auth", "/static", "/health", "/metrics", "/leoflow", "/execution", "/webhooks")

Authenticate = Callable[[falcon.Request], bool]


def normalize_base(base_url: str) -> str:
    """``""``/``"/"`` → ``/``; ``"leoflow"``/``"/leoflow"`` → ``/leoflow/`` (the form <base href> needs)."""
    path = (base_url or "/").strip()
    if "://" in path:  # a full URL: only its path matters to the browser's <base>
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = "/" + path.strip("/")
    return path if path == "/" else path + "/"


def safe_next(path: str, query: str = "") -> str:
    """The ``next`` target for the login page: always a same-origin absolute path (no ``//host``)."""
    target = "/" + path.lstrip("/")
    if query:
        target += "?" + query
    return target


@dataclass(frozen=True)
class _Cached:
    data: bytes
    etag: str
    gz: bytes | None


class StaticFiles:
    """Serves one dist directory: exact MIME types, ETags, long caching for hashed assets, gzip."""

    def __init__(self, root: Path, max_cached_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self._cache: dict[tuple[str, int, int], _Cached] = {}
        self._cached_bytes = 0
        self._max_cached_bytes = max_cached_bytes
        self._lock = threading.Lock()

    def resolve(self, filepath: str) -> Path | None:
        if not filepath or "\x00" in filepath or "\\" in filepath:
            return None
        parts = [p for p in filepath.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or any(p.startswith(".") for p in parts):
            return None
        target = self.root.joinpath(*parts)
        try:
            resolved = target.resolve(strict=True)
            root = self.root.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_file() or not resolved.is_relative_to(root):
            return None
        return resolved

    def _load(self, path: Path) -> _Cached:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        data = path.read_bytes()
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        gz = None
        if path.suffix in COMPRESSIBLE and len(data) >= GZIP_MIN_BYTES:
            packed = gzip.compress(data, compresslevel=6, mtime=0)
            gz = packed if len(packed) < len(data) else None
        entry = _Cached(data, etag, gz)
        with self._lock:
            size = len(data) + len(gz or b"")
            if self._cached_bytes + size <= self._max_cached_bytes:
                self._cache[key] = entry
                self._cached_bytes += size
        return entry

    def serve(self, req: falcon.Request, resp: falcon.Response, filepath: str) -> None:
        path = self.resolve(filepath)
        if path is None:
            raise Problem(404, f"no such UI file: {filepath}", type_="not-found")
        entry = self._load(path)
        resp.cache_control = [IMMUTABLE if "assets" in path.relative_to(self.root.resolve()).parts[:1] else SHORT]
        resp.set_header("ETag", entry.etag)
        resp.vary = ["Accept-Encoding"]
        if _etag_matches(req.get_header("If-None-Match"), entry.etag):
            resp.status = falcon.HTTP_304
            resp.content_type = None  # a 304 carries no body, so no type either (RFC 9110 §15.4.5)
            return
        resp.content_type = MIME_TYPES.get(path.suffix.lower(), "application/octet-stream")
        resp.set_header("X-Content-Type-Options", "nosniff")
        body = entry.data
        if entry.gz is not None and _accepts_gzip(req.get_header("Accept-Encoding")):
            body = entry.gz
            resp.set_header("Content-Encoding", "gzip")
        resp.content_length = len(body)
        if req.method != "HEAD":
            resp.data = body


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags


def _accepts_gzip(header: str | None) -> bool:
    if not header:
        return False
    for item in header.split(","):
        name, *params = (p.strip() for p in item.split(";"))
        if name.lower() not in ("gzip", "*"):
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class UiBundle:
    """The installed bundle, bound to one base path and one authentication check."""

    def __init__(self, home: Path | None, base_url: str, authenticate: Authenticate) -> None:
        self.home = home
        self.base = normalize_base(base_url)
        self.authenticate = authenticate
        self.app_files = StaticFiles(bundle.ui_dist_dir(home))
        self.auth_files = StaticFiles(bundle.auth_dist_dir(home))
        self._index_cache: dict[str, tuple[int, bytes]] = {}

    # -------------------------------------------------------------- checks
    def installed(self) -> bool:
        return bundle.is_installed(self.home)

    def _require(self) -> None:
        if not self.installed():
            raise Problem(
                503,
                f"the Airflow UI bundle is not installed in {bundle.ui_root(self.home)}: {bundle.INSTALL_HINT}; "
                "the API keeps working meanwhile",
                type_="ui-bundle-missing",
                title="UI bundle not installed",
            )

    def _index(self, which: str) -> bytes:
        path = (bundle.ui_dist_dir(self.home) if which == "app" else bundle.auth_dist_dir(self.home)) / "index.html"
        mtime = path.stat().st_mtime_ns
        hit = self._index_cache.get(which)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        text = path.read_text(encoding="utf-8")
        if PLACEHOLDER not in text:
            log.warning("index.html has no base-href placeholder", extra={"path": str(path)})
        rendered = text.replace(PLACEHOLDER, self.base).encode()
        self._index_cache[which] = (mtime, rendered)
        return rendered

    def _send_index(self, req: falcon.Request, resp: falcon.Response, which: str) -> None:
        body = self._index(which)
        resp.content_type = MIME_TYPES[".html"]
        resp.cache_control = [NO_CACHE]
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("X-Frame-Options", "SAMEORIGIN")
        resp.content_length = len(body)
        if req.method != "HEAD":
            resp.data = body

    def login_url(self, req: falcon.Request) -> str:
        return f"{self.base}auth/login?{urlencode({'next': safe_next(req.path, req.query_string)}, quote_via=quote)}"

    # -------------------------------------------------------------- responders
    def on_static(self, req: falcon.Request, resp: falcon.Response, filepath: str) -> None:
        self._require()
        self.app_files.serve(req, resp, filepath)

    def on_auth_static(self, req: falcon.Request, resp: falcon.Response, filepath: str) -> None:
        self._require()
        self.auth_files.serve(req, resp, filepath)

    def login_sink(self, req: falcon.Request, resp: falcon.Response, **_kw: Any) -> None:
        if req.method not in ("GET", "HEAD"):
            raise Problem(405, f"{req.method} is not allowed on {req.path}", type_="method-not-allowed",
                          headers={"Allow": "GET, HEAD"})
        self._require()
        self._send_index(req, resp, "auth")

    def spa_sink(self, req: falcon.Request, resp: falcon.Response, **_kw: Any) -> None:
        if _is_reserved(req.path):
            raise Problem(404, f"no such endpoint: {req.method} {req.path}", type_="not-found")
        if req.method not in ("GET", "HEAD"):
            raise Problem(405, f"{req.method} is not allowed on {req.path}", type_="method-not-allowed",
                          headers={"Allow": "GET, HEAD"})
        self._require()
        if not self.authenticate(req):
            resp.status = falcon.HTTP_302
            resp.location = self.login_url(req)
            resp.cache_control = [NO_CACHE]
            return
        self._send_index(req, resp, "app")

    def mount(self, app: falcon.App) -> None:
        app.add_route("/static/{filepath:path}", _Static(self.on_static))
        app.add_route("/auth/static/{filepath:path}", _Static(self.on_auth_static))
        app.add_sink(self.spa_sink, re.compile(r"/"))
        # Added last, so it is tried before the catch-all (Falcon prefers the newest sink).
        app.add_sink(self.login_sink, re.compile(r"/auth(/|$)"))
        if not self.installed():
            log.warning(
                "Airflow UI bundle not installed; the UI answers 503 until it is",
                extra={"ui_root": str(bundle.ui_root(self.home)), "fix": "leoflow ui install"},
            )


def _is_reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


class _Static:
    """A public route resource: the bundle's files need no session (the login page loads them)."""

    public = True

    def __init__(self, responder: Callable[[falcon.Request, falcon.Response, str], None]) -> None:
        self._responder = responder

    def on_get(self, req: falcon.Request, resp: falcon.Response, filepath: str) -> None:
        self._responder(req, resp, filepath)

    def on_head(self, req: falcon.Request, resp: falcon.Response, filepath: str) -> None:
        self._responder(req, resp, filepath)
