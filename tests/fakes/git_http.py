"""A smart-HTTP git server on 127.0.0.1: real ``git http-backend`` behind HTTP Basic auth.

Lets tests fetch over http with a credential, as from a hosted forge, and see which
``Authorization`` headers arrived: a request without the right one gets 401.
"""

from __future__ import annotations

import base64
import hmac
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class GitHttpServer:
    url: str  # http://127.0.0.1:<port>/ ; repositories are paths below the served root
    authorizations: list[str] = field(default_factory=list)


@contextmanager
def serve_git(root: Path, user: str, password: str) -> Iterator[GitHttpServer]:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    state = GitHttpServer("")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            got = self.headers.get("Authorization", "")
            state.authorizations.append(got)
            if not hmac.compare_digest(got.encode(), expected.encode()):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                   "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": user,
                   "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""), "PATH": "/usr/bin:/bin"}
            done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30,
                                  check=False)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
