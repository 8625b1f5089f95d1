"""HTTP plumbing the fake agents share: a threaded loopback server and the request-handler basics.

The fakes differ in their APIs, not in how they sit on a socket, so that part lives once here.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, quiet, every supported verb routed to ``_dispatch(method)``."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms for the
    # delayed ACK on every request. Consul and Nomad (Go) set TCP_NODELAY too.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} must route {method}")


def start_server(fake: object, handler: type[FakeHandler], *, name: str, ssl_context: ssl.SSLContext | None,
                 server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
                 ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handler`` (bound to ``fake``) on 127.0.0.1 with a free port, optionally over TLS."""
    server = server_class(("127.0.0.1", 0), type("Handler", (handler,), {"fake": fake}))
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name=name, daemon=True)
    thread.start()
    return server, thread
