"""A fake Consul agent speaking the real HTTP API on 127.0.0.1: KV, txn and sessions.

It reproduces the documented semantics the adapter depends on (research/hashicorp.md §2.1-2.3,
§5.1-5.2), read from Consul's state store (``agent/consul/state/{kvs,txn}.go``): a raft-like global
index, per-entry Create/Modify/Lock indexes, no-op writes keeping ModifyIndex, tombstones so a
prefix index never slides back on delete, 404 *with* ``X-Consul-Index``, txn 409 bodies naming the
failing op, 413 over the op/size limits, sessions invalidated at TTL x 2, lock-delay on
invalidation (never on release), blocking queries with ``index``/``wait`` and jitter.

Test hooks: an injectable clock (``ManualClock.advance`` expires sessions deterministically), fault
injection (``fail``/``reset``/``delay`` for the next N matching requests, optionally only for one
ACL token = one client), ``snapshot()``/``restore()`` to make the index go backwards,
``spurious_wakeup()``, ``invalidate_session()``, ``pause_ttl_reaper()``, an ACL token mode and a log
of requests (method, path, token) for assertions.
"""

from __future__ import annotations

import base64
import bisect
import copy
import itertools
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.http import FakeHandler, start_server

_KEY_OK = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*/?")
_SUSPICIOUS = re.compile(r"\.(json|ya?ml|xml|txt|log|py|sh|exe|bat|php|js|html?|env|sql|db|bak|key|pem)$", re.I)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_LOCK_DELAY = 60.0
SESSION_TTL_MAX = 86400.0


def parse_duration(text: str) -> float:
    """Go ``time.ParseDuration`` for the forms clients send ("15s", "1m30s", "0.5s", "0s")."""
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def go_quote(text: str) -> str:
    """Go's %q for the ASCII keys we use."""
    return json.dumps(text)


class RealClock:
    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """Time that moves only when a test says so; ``advance`` runs the TTL reaper."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
        for listener in list(self.listeners):
            listener()


@dataclass
class Fault:
    kind: str  # "status" | "reset" | "delay"
    remaining: int
    status: int = 500
    body: str = "rpc error making call: No cluster leader"
    seconds: float = 0.0
    token: str | None = None  # only requests carrying this ACL token (one client)
    path_prefix: str = ""

    def matches(self, path: str, token: str | None) -> bool:
        return (self.token is None or self.token == token) and path.startswith(self.path_prefix)


@dataclass
class _Session:
    id: str
    name: str
    node: str
    lock_delay: float
    behavior: str
    ttl_text: str
    ttl: float
    checks: list[str]
    create_index: int
    modify_index: int
    expires_at: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Name": self.name, "Node": self.node, "LockDelay": int(self.lock_delay * 1e9),
            "Behavior": self.behavior, "TTL": self.ttl_text, "NodeChecks": self.checks, "ServiceChecks": None,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }


class _SortedKeys:
    """Keys of a dict kept sorted, so a prefix read is O(log N + k) as on Consul's radix tree.

    Without it every list re-sorts all keys, which made the fake, not the adapter, dominate
    benchmark latencies once the store held a realistic ~20k keys.
    """

    def __init__(self, keys: list[str] | None = None) -> None:
        self.keys = sorted(keys or [])

    def add(self, key: str) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i == len(self.keys) or self.keys[i] != key:
            self.keys.insert(i, key)

    def remove(self, key: str) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def under(self, prefix: str) -> list[str]:
        start = bisect.bisect_left(self.keys, prefix)
        out: list[str] = []
        for key in itertools.islice(self.keys, start, None):
            if not key.startswith(prefix):
                break
            out.append(key)
        return out

    def copy(self) -> _SortedKeys:
        clone = _SortedKeys()
        clone.keys = list(self.keys)
        return clone


@dataclass
class _State:
    index: int = 0
    kv_index: int = 0
    kv: dict[str, dict[str, Any]] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    session_index: int = 0
    lock_delays: dict[str, float] = field(default_factory=dict)
    kv_keys: _SortedKeys = field(default_factory=_SortedKeys)
    tombstone_keys: _SortedKeys = field(default_factory=_SortedKeys)

    def checkpoint(self) -> _State:
        """A cheap copy for txn rollback: entries are replaced, never mutated, in a txn."""
        return _State(self.index, self.kv_index, dict(self.kv), dict(self.tombstones), dict(self.sessions),
                      self.session_index, dict(self.lock_delays), self.kv_keys.copy(), self.tombstone_keys.copy())

    def entries_under(self, prefix: str) -> list[dict[str, Any]]:
        return [self.kv[k] for k in self.kv_keys.under(prefix)]

    def put_entry(self, entry: dict[str, Any]) -> None:
        key = entry["Key"]
        if key not in self.kv:
            self.kv_keys.add(key)
        self.kv[key] = entry
        if self.tombstones.pop(key, None) is not None:
            self.tombstone_keys.remove(key)

    def drop_entry(self, key: str, idx: int) -> None:
        del self.kv[key]
        self.kv_keys.remove(key)
        if key not in self.tombstones:
            self.tombstone_keys.add(key)
        self.tombstones[key] = idx


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or was reset on purpose is not a fake bug: stay quiet about it."""
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


class FakeConsul:
    """The state machine plus its HTTP server. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        clock: RealClock | ManualClock | None = None,
        max_txn_ops: int = 64,
        kv_max_value_size: int = 512 * 1024,
        txn_max_req_len: int = 512 * 1024,
        session_ttl_min: float = 10.0,
        ttl_multiplier: float = 2.0,
        acl_tokens: set[str] | None = None,
        node: str = "fake-node",
        jitter: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        self.max_txn_ops = max_txn_ops
        self.kv_max_value_size = kv_max_value_size
        self.txn_max_req_len = txn_max_req_len
        self.session_ttl_min = session_ttl_min
        self.ttl_multiplier = ttl_multiplier
        self.acl_tokens = acl_tokens
        self.node = node
        self.jitter = jitter
        self.ssl_context = ssl_context
        self.state = _State()
        self.cond = threading.Condition()
        self.faults: list[Fault] = []
        self.requests: deque[tuple[str, str, str | None, dict[str, str]]] = deque(maxlen=10000)
        self._wake_generation = 0
        self._reaper_paused = False
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        if isinstance(self.clock, ManualClock):
            self.clock.listeners.append(self.reap)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeConsul:
        self._server, serve = start_server(self, _Handler, name="fake-consul", ssl_context=self.ssl_context,
                                           server_class=_Server)
        self._threads.append(serve)
        if isinstance(self.clock, RealClock):
            reaper = threading.Thread(target=self._reaper_loop, name="fake-consul-reaper", daemon=True)
            reaper.start()
            self._threads.append(reaper)
        return self

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeConsul:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def addr(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- test hooks --------------------------------------------------------------------------

    def fail(self, count: int = 1, *, status: int = 500, body: str | None = None, token: str | None = None,
             path_prefix: str = "") -> None:
        self.faults.append(Fault("status", count, status=status, body=body or Fault.body, token=token,
                                 path_prefix=path_prefix))

    def reset(self, count: int = 1, *, token: str | None = None, path_prefix: str = "") -> None:
        """The next ``count`` matching requests get their TCP connection reset (RST, no response)."""
        self.faults.append(Fault("reset", count, token=token, path_prefix=path_prefix))

    def delay(self, seconds: float, count: int = 1, *, token: str | None = None, path_prefix: str = "") -> None:
        self.faults.append(Fault("delay", count, seconds=seconds, token=token, path_prefix=path_prefix))

    def partition(self, token: str, count: int = 1_000_000) -> None:
        """Cut one client (identified by its ACL token) off: every request it sends is reset."""
        self.reset(count, token=token)

    def heal(self) -> None:
        self.faults.clear()

    def snapshot(self) -> _State:
        with self.cond:
            return copy.deepcopy(self.state)

    def restore(self, snap: _State) -> None:
        """Snapshot restore: state (and the index) go back in time; blocked queries wake."""
        with self.cond:
            self.state = copy.deepcopy(snap)
            self._wake_generation += 1
            self.cond.notify_all()

    def spurious_wakeup(self) -> None:
        """Blocked queries return now with an unchanged index (Consul allows this)."""
        with self.cond:
            self._wake_generation += 1
            self.cond.notify_all()

    def invalidate_session(self, session_id: str) -> None:
        with self.cond:
            self._invalidate(session_id)
            self.cond.notify_all()

    def pause_ttl_reaper(self, paused: bool = True) -> None:
        self._reaper_paused = paused

    def tokens_seen(self, path_prefix: str) -> list[str | None]:
        return [token for _, path, token, _ in list(self.requests) if path.startswith(path_prefix)]

    def queries_seen(self, path_prefix: str) -> list[dict[str, str]]:
        return [query for _, path, _, query in list(self.requests) if path.startswith(path_prefix)]

    def dump(self) -> dict[str, bytes]:
        with self.cond:
            return {k: base64.b64decode(v["Value"]) if v["Value"] else b"" for k, v in self.state.kv.items()}

    # -- sessions ----------------------------------------------------------------------------

    def _reaper_loop(self) -> None:
        while not self._stopping:
            self.reap()
            with self.cond:
                self.cond.wait(0.01)

    def reap(self) -> None:
        if self._reaper_paused:
            return
        now = self.clock.now()
        with self.cond:
            expired = [s.id for s in self.state.sessions.values() if s.expires_at is not None and s.expires_at <= now]
            for session_id in expired:
                self._invalidate(session_id)
            if expired:
                self.cond.notify_all()

    def _bump(self) -> int:
        self.state.index += 1
        return self.state.index

    def _invalidate(self, session_id: str) -> None:
        session = self.state.sessions.pop(session_id, None)
        if session is None:
            return
        idx = self._bump()
        now = self.clock.now()
        for key, entry in list(self.state.kv.items()):
            if entry.get("Session") != session_id:
                continue
            if session.behavior == "delete":
                self._delete(key, idx)
            else:
                entry = dict(entry)
                entry.pop("Session", None)
                entry["ModifyIndex"] = idx
                self.state.kv[key] = entry
                self.state.kv_index = idx
            if session.lock_delay > 0:
                self.state.lock_delays[key] = now + session.lock_delay
        self.state.session_index = idx

    # -- KV primitives (called with self.cond held) ------------------------------------------

    def _delete(self, key: str, idx: int) -> None:
        if key in self.state.kv:
            self.state.drop_entry(key, idx)
            self.state.kv_index = idx

    def _set(self, entry: dict[str, Any], idx: int, update_session: bool) -> dict[str, Any]:
        """``kvsSetTxn``: keeps ModifyIndex when nothing changed."""
        existing = self.state.kv.get(entry["Key"])
        entry["CreateIndex"] = existing["CreateIndex"] if existing else idx
        if not update_session:
            if existing and existing.get("Session"):
                entry["Session"] = existing["Session"]
            else:
                entry.pop("Session", None)
        if not entry.get("Session"):
            entry.pop("Session", None)
        fields = ("LockIndex", "Flags", "Value", "Session")
        if existing is not None and all(existing.get(f) == entry.get(f) for f in fields):
            entry["ModifyIndex"] = existing["ModifyIndex"]
            return entry
        entry["ModifyIndex"] = idx
        self.state.put_entry(dict(entry))
        self.state.kv_index = idx
        return entry

    def _lock(self, entry: dict[str, Any], idx: int) -> bool:
        session = entry.get("Session") or ""
        if not session:
            raise HTTPError(500, "missing session")
        if session not in self.state.sessions:
            raise HTTPError(500, f"invalid session {go_quote(session)}")
        existing = self.state.kv.get(entry["Key"])
        if existing is not None:
            held = existing.get("Session")
            if held == session:
                entry["LockIndex"] = existing["LockIndex"]
            elif held:
                return False
            else:
                entry["LockIndex"] = existing["LockIndex"] + 1
        else:
            entry["LockIndex"] = 1
        self._set(entry, idx, update_session=True)
        return True

    def _unlock(self, entry: dict[str, Any], idx: int) -> bool:
        existing = self.state.kv.get(entry["Key"])
        if existing is None or existing.get("Session") != entry.get("Session"):
            return False
        entry.pop("Session", None)
        entry["LockIndex"] = existing["LockIndex"]
        self._set(entry, idx, update_session=True)
        return True

    def _cas(self, entry: dict[str, Any], cas: int, idx: int) -> bool:
        existing = self.state.kv.get(entry["Key"])
        if cas == 0 and existing is not None:
            return False
        if cas != 0 and (existing is None or existing["ModifyIndex"] != cas):
            return False
        entry["LockIndex"] = existing["LockIndex"] if existing else 0
        self._set(entry, idx, update_session=False)
        return True

    def _delete_cas(self, key: str, cas: int, idx: int) -> bool:
        existing = self.state.kv.get(key)
        if existing is None or existing["ModifyIndex"] != cas:
            return existing is None
        self._delete(key, idx)
        return True

    def _lock_delayed(self, key: str) -> bool:
        until = self.state.lock_delays.get(key)
        return until is not None and until > self.clock.now()

    def _list_index(self, prefix: str, entries: list[dict[str, Any]]) -> int:
        if prefix == "":
            return max(self.state.kv_index, 1)
        lindex = max([e["ModifyIndex"] for e in entries] or [0])
        gindex = max([self.state.tombstones[k] for k in self.state.tombstone_keys.under(prefix)] or [0])
        index = max(lindex, gindex) or self.state.kv_index
        return max(index, 1)

    # -- blocking ----------------------------------------------------------------------------

    def blocking(self, query: dict[str, str], compute: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        """Run ``compute`` (under the lock) until its index passes ``?index`` or ``?wait`` elapses."""
        min_index = int(query.get("index", "0") or 0)
        with self.cond:
            index, result = compute()
            if min_index <= 0 or index > min_index:
                return index, result
            wait = parse_duration(query["wait"]) if query.get("wait") else 300.0
            wait = min(wait, 600.0)
            if self.jitter:
                wait += random.uniform(0, wait / 16)
            deadline = time.monotonic() + wait
            generation = self._wake_generation
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    return index, result
                self.cond.wait(remaining)
                index, result = compute()
                if index > min_index or self._wake_generation != generation:
                    return index, result

    def notify(self) -> None:
        self.cond.notify_all()


def _entry_json(entry: dict[str, Any], with_value: bool = True) -> dict[str, Any]:
    out = {k: entry[k] for k in ("LockIndex", "Key", "Flags", "CreateIndex", "ModifyIndex")}
    out["Value"] = entry.get("Value") if with_value else None
    if entry.get("Session"):
        out["Session"] = entry["Session"]
    return out


def _lower_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_lower_keys(v) for v in obj]
    return obj


class _Handler(FakeHandler):
    fake: FakeConsul
    server_version = "FakeConsul/1.0"

    # -- plumbing ----------------------------------------------------------------------------

    def _token(self, query: dict[str, str]) -> str | None:
        token = self.headers.get("X-Consul-Token")
        if not token:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[len("Bearer "):]
        return token or query.get("token") or None

    def _send(self, status: int, body: bytes | str | Any, *, index: int | None = None,
              content_type: str = "application/json") -> None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str) and content_type.startswith("text/"):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
            self.send_header("X-Consul-KnownLeader", "true")
            self.send_header("X-Consul-LastContact", "0")
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        path = unquote(split.path)
        raw_query = split.query
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        token = self._token(query)
        fake.requests.append((method, path, token, query))
        with fake.cond:  # handler threads race for the same fault budget
            hits = [f for f in fake.faults if f.remaining > 0 and f.matches(path, token)]
            for fault in hits:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    fake.faults.remove(fault)
        for fault in hits:
            if fault.kind == "reset":
                self._reset()
                return
            if fault.kind == "status":
                self._send(fault.status, fault.body, content_type="text/plain; charset=utf-8")
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        if fake.acl_tokens is not None and token not in fake.acl_tokens:
            self._send(403, "ACL not found", content_type="text/plain; charset=utf-8")
            return
        fake.reap()
        try:
            if path.startswith("/v1/kv/") or path == "/v1/kv":
                self._kv(method, path[len("/v1/kv/"):], query, raw_query, body)
            elif path == "/v1/txn" and method == "PUT":
                self._txn(body)
            elif path.startswith("/v1/session/"):
                self._session(method, path[len("/v1/session/"):], query, body)
            elif path == "/v1/status/leader":
                self._send(200, "127.0.0.1:8300")
            else:
                self._send(404, f"no handler for {method} {path}", content_type="text/plain; charset=utf-8")
        except HTTPError as err:
            self._send(err.status, err.body, content_type="text/plain; charset=utf-8")

    # -- KV ----------------------------------------------------------------------------------

    def _kv(self, method: str, key: str, query: dict[str, str], raw_query: str, body: bytes) -> None:
        fake = self.fake
        recurse = "recurse" in query
        if key == "" and not (method == "GET" and ("keys" in query or recurse)) and not (
            method == "DELETE" and recurse
        ):
            raise HTTPError(400, "Missing key name")
        if key and (not _KEY_OK.fullmatch(key) or ".." in key or _SUSPICIOUS.search(key)):
            raise HTTPError(400, f"Invalid key {go_quote(key)}")
        if method == "GET":
            self._kv_get(key, query)
            return
        if method == "DELETE":
            if recurse and "cas" in query:
                raise HTTPError(400, f"Conflicting flags: {raw_query}")
            with fake.cond:
                idx = fake.state.index + 1
                if recurse:
                    doomed = [k for k in fake.state.kv if k.startswith(key)]
                    if doomed:
                        fake._bump()
                        for k in doomed:
                            fake._delete(k, idx)
                    ok = True
                elif "cas" in query:
                    ok = fake._delete_cas(key, int(query["cas"]), idx)
                    if fake.state.kv_index == idx:
                        fake._bump()
                else:
                    if key in fake.state.kv:
                        fake._bump()
                        fake._delete(key, idx)
                    ok = True
                fake.notify()
            self._send(200, ok)
            return
        # PUT
        if len(body) > fake.kv_max_value_size:
            raise HTTPError(413, f"Request body({len(body)} bytes) too large, max size: {fake.kv_max_value_size} "
                                 "bytes. See https://developer.hashicorp.com/consul/docs/agent/config/config-files"
                                 "#kv_max_value_size.")
        if sum(f in query for f in ("cas", "acquire", "release")) > 1:
            raise HTTPError(400, f"Conflicting flags: {raw_query}")
        entry: dict[str, Any] = {
            "Key": key, "Flags": int(query.get("flags") or 0), "LockIndex": 0,
            "Value": base64.b64encode(body).decode() if body else None,
        }
        with fake.cond:
            idx = fake.state.index + 1
            before = fake.state.kv_index
            if "acquire" in query:
                entry["Session"] = query["acquire"]
                ok = False if fake._lock_delayed(key) else fake._lock(entry, idx)
            elif "release" in query:
                entry["Session"] = query["release"]
                ok = fake._unlock(entry, idx)
            elif "cas" in query:
                ok = fake._cas(entry, int(query["cas"]), idx)
            else:
                entry["LockIndex"] = fake.state.kv.get(key, {}).get("LockIndex", 0)
                fake._set(entry, idx, update_session=False)
                ok = True
            if fake.state.kv_index != before:
                fake._bump()
            fake.notify()
        self._send(200, ok)

    def _kv_get(self, key: str, query: dict[str, str]) -> None:
        fake = self.fake
        recurse = "recurse" in query
        want_keys = "keys" in query
        separator = query.get("separator", query.get("seperator"))

        def compute() -> tuple[int, Any]:
            state = fake.state
            if recurse or want_keys:
                entries = state.entries_under(key)
                return fake._list_index(key, entries), [dict(e) for e in entries]
            entry = state.kv.get(key)
            if entry is None:
                return max(state.kv_index, 1), None
            return max(entry["ModifyIndex"], 1), [dict(entry)]

        index, entries = fake.blocking(query, compute)
        if want_keys:
            names: list[str] = []
            for entry in entries:
                name = entry["Key"]
                if separator:
                    cut = name.find(separator, len(key))
                    if cut >= 0:
                        name = name[: cut + len(separator)]
                if not names or names[-1] != name:
                    names.append(name)
            if not names and key != "":
                self._send(404, b"", index=index)
            else:
                self._send(200, names, index=index)
            return
        if not entries:
            self._send(404, b"", index=index)
            return
        if "raw" in query and not recurse:
            value = entries[0].get("Value")
            self._send(200, base64.b64decode(value) if value else b"", index=index,
                       content_type="text/plain; charset=utf-8")
            return
        self._send(200, [_entry_json(e) for e in entries], index=index)

    # -- txn ---------------------------------------------------------------------------------

    def _txn(self, body: bytes) -> None:
        fake = self.fake
        if len(body) > fake.txn_max_req_len:
            raise HTTPError(413, f"Request body too large, max size: {fake.txn_max_req_len} bytes")
        try:
            ops = _lower_keys(json.loads(body or b"null"))
            if not isinstance(ops, list):
                raise ValueError("body is not a JSON array")
        except ValueError as exc:
            raise HTTPError(400, f"Failed to parse body: {exc}") from exc
        if len(ops) > fake.max_txn_ops:
            raise HTTPError(413, f"Transaction contains too many operations ({len(ops)} > {fake.max_txn_ops})")
        parsed: list[dict[str, Any]] = []
        for op in ops:
            kv = op.get("kv") if isinstance(op, dict) else None
            if not isinstance(kv, dict):
                raise HTTPError(400, "Failed to parse body: this fake supports KV operations only")
            value = kv.get("value")
            raw = base64.b64decode(value) if value else b""
            if len(raw) > fake.kv_max_value_size:
                raise HTTPError(413, f"Value for key {go_quote(kv.get('key', ''))} is too large "
                                     f"({len(raw)} > {fake.kv_max_value_size} bytes)")
            parsed.append(kv)
        with fake.cond:
            saved = fake.state.checkpoint()
            idx = fake.state.index + 1
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for i, kv in enumerate(parsed):
                try:
                    result = self._txn_op(kv, idx)
                except HTTPError as err:
                    errors.append({"OpIndex": i, "What": err.body})
                    continue
                if isinstance(result, str):
                    errors.append({"OpIndex": i, "What": result})
                else:
                    results.extend(result)
            if errors:
                fake.state = saved
                self._send(409, {"Results": None, "Errors": errors})
                return
            if fake.state.kv_index == idx or fake.state.session_index == idx:
                fake.state.index = idx
            fake.notify()
        self._send(200, {"Results": [{"KV": r} for r in results], "Errors": None})

    def _txn_op(self, kv: dict[str, Any], idx: int) -> list[dict[str, Any]] | str:
        fake = self.fake
        verb = kv.get("verb", "")
        key = kv.get("key", "")
        entry: dict[str, Any] = {"Key": key, "Flags": int(kv.get("flags") or 0), "LockIndex": 0,
                                 "Value": kv.get("value") or None}
        index = int(kv.get("index") or 0)
        session = kv.get("session") or ""
        state = fake.state
        existing = state.kv.get(key)
        q = go_quote(key)
        if verb == "set":
            entry["LockIndex"] = existing["LockIndex"] if existing else 0
            return [_entry_json(fake._set(entry, idx, update_session=False), with_value=False)]
        if verb == "cas":
            if not fake._cas(entry, index, idx):
                return f"failed to set key {q}, index is stale"
            return [_entry_json(entry, with_value=False)]
        if verb == "lock":
            entry["Session"] = session
            if fake._lock_delayed(key):
                return f"failed to lock key {q}, lock is already held"
            if not fake._lock(entry, idx):
                return f"failed to lock key {q}, lock is already held"
            return [_entry_json(entry, with_value=False)]
        if verb == "unlock":
            entry["Session"] = session
            if not fake._unlock(entry, idx):
                return f"failed to unlock key {q}, lock isn't held, or is held by another session"
            return [_entry_json(entry, with_value=False)]
        if verb == "get":
            return [_entry_json(existing)] if existing else f"key {q} doesn't exist"
        if verb == "get-or-empty":
            return [_entry_json(existing)] if existing else [{**entry, "Value": None}]
        if verb == "get-tree":
            return [_entry_json(e) for e in state.entries_under(key)]
        if verb == "check-index":
            if existing is None:
                return f"failed to check index, key {q} doesn't exist"
            if existing["ModifyIndex"] != index:
                return f"failed index check for key {q}, current modify index {existing['ModifyIndex']} != {index}"
            return [_entry_json(existing, with_value=False)]
        if verb == "check-session":
            if existing is None:
                return f"failed to check session, key {q} doesn't exist"
            if existing.get("Session", "") != session:
                return (f"failed session check for key {q}, current session "
                        f"{go_quote(existing.get('Session', ''))} != {go_quote(session)}")
            return [_entry_json(existing, with_value=False)]
        if verb == "check-not-exists":
            return f"key {q} exists" if existing is not None else []
        if verb == "delete":
            fake._delete(key, idx)
            return []
        if verb == "delete-tree":
            for k in [k for k in state.kv if k.startswith(key)]:
                fake._delete(k, idx)
            return []
        if verb == "delete-cas":
            if not fake._delete_cas(key, index, idx):
                return f"failed to delete key {q}, index is stale"
            return []
        return f"unknown KV verb {go_quote(verb)}"

    # -- sessions ----------------------------------------------------------------------------

    def _session(self, method: str, rest: str, query: dict[str, str], body: bytes) -> None:
        fake = self.fake
        if rest == "create" and method == "PUT":
            self._session_create(body)
            return
        if rest.startswith("renew/") and method == "PUT":
            session_id = rest[len("renew/"):]
            with fake.cond:
                session = fake.state.sessions.get(session_id)
                if session is None:
                    raise HTTPError(404, f"Session id '{session_id}' not found")
                if session.ttl:
                    session.expires_at = fake.clock.now() + session.ttl * fake.ttl_multiplier
                self._send(200, [session.as_json()])
            return
        if rest.startswith("destroy/") and method == "PUT":
            fake.invalidate_session(rest[len("destroy/"):])
            self._send(200, True)
            return
        if rest.startswith("info/") and method == "GET":
            session_id = rest[len("info/"):]

            def info() -> tuple[int, Any]:
                s = fake.state.sessions.get(session_id)
                return max(fake.state.session_index, 1), [s.as_json()] if s else []

            index, result = fake.blocking(query, info)
            self._send(200, result, index=index)
            return
        if rest == "list" or rest.startswith("node/"):
            node = rest[len("node/"):] if rest.startswith("node/") else None

            def listing() -> tuple[int, Any]:
                return max(fake.state.session_index, 1), [
                    s.as_json() for s in fake.state.sessions.values() if node is None or s.node == node
                ]

            index, result = fake.blocking(query, listing)
            self._send(200, result, index=index)
            return
        raise HTTPError(405, f"method {method} not allowed")

    def _session_create(self, body: bytes) -> None:
        fake = self.fake
        try:
            spec = _lower_keys(json.loads(body)) if body.strip() else {}
        except ValueError as exc:
            raise HTTPError(400, f"Request decode failed: {exc}") from exc
        behavior = spec.get("behavior") or "release"
        if behavior not in ("release", "delete"):
            raise HTTPError(500, f"Invalid Behavior setting '{behavior}'")
        lock_delay_raw = spec.get("lockdelay", "15s")
        if isinstance(lock_delay_raw, int | float):
            lock_delay = float(lock_delay_raw) if lock_delay_raw < 1000 else lock_delay_raw / 1e9
        else:
            try:
                lock_delay = parse_duration(str(lock_delay_raw))
            except ValueError as exc:
                raise HTTPError(400, f"Request decode failed: {exc}") from exc
        lock_delay = min(lock_delay, MAX_LOCK_DELAY)
        ttl_text = spec.get("ttl") or ""
        ttl = 0.0
        if ttl_text:
            try:
                ttl = parse_duration(ttl_text)
            except ValueError as exc:
                raise HTTPError(500, f"Session TTL '{ttl_text}' invalid: {exc}") from exc
            if ttl != 0 and not fake.session_ttl_min <= ttl <= SESSION_TTL_MAX:
                raise HTTPError(500, f"Invalid Session TTL '{int(ttl * 1e9)}', must be between "
                                     f"[{fake.session_ttl_min}s={SESSION_TTL_MAX}s]")
        checks = spec.get("checks", spec.get("nodechecks"))
        checks = ["serfHealth"] if checks is None else list(checks)
        with fake.cond:
            idx = fake._bump()
            session = _Session(
                id=str(uuid.uuid4()), name=spec.get("name") or "", node=spec.get("node") or fake.node,
                lock_delay=lock_delay, behavior=behavior, ttl_text=ttl_text, ttl=ttl, checks=checks,
                create_index=idx, modify_index=idx,
                expires_at=fake.clock.now() + ttl * fake.ttl_multiplier if ttl else None,
            )
            fake.state.sessions[session.id] = session
            fake.state.session_index = idx
            fake.notify()
        self._send(200, {"ID": session.id})
