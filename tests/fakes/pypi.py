"""A PEP 503 "simple" package index on 127.0.0.1 serving files from one directory.

Lets tests drive the real ``pip download`` path of ``leoflow ui install`` offline: the index
serves whatever wheel files the test puts in its directory (the real cached wheel, or a
well-formed wheel with the right name and the wrong content for the hash-mismatch case).
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_of(filename: str) -> str:
    return _normalize(filename.split("-", 1)[0])


@contextmanager
def serve_index(directory: Path) -> Iterator[str]:
    """Yield the index URL (``http://127.0.0.1:<port>/simple``) while serving ``directory``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            return None

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                project = _normalize(parts[1])
                links = "".join(
                    f'<a href="/files/{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
                    for p in sorted(directory.glob("*.whl"))
                    if _project_of(p.name) == project
                )
                if not links:
                    self._send(404, b"not found", "text/plain")
                    return
                self._send(200, f"<html><body>\n{links}</body></html>".encode(), "text/html")
                return
            if len(parts) == 2 and parts[0] == "files":
                f = directory / parts[1]
                if f.is_file() and f.parent == directory:
                    self._send(200, f.read_bytes(), "application/octet-stream")
                    return
            self._send(404, b"not found", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
