"""``Store`` on Consul KV through py-consul (the maintained fork, ``import consul``).

py-consul does the KV reads/writes and session renew/destroy; we wrap its known traps
(research/hashicorp.md §1.1):

* ``txn.put`` never sends the ACL token (and has no dc/namespace): ``/v1/txn`` is called directly on
  py-consul's own ``requests`` session (same TLS settings) with ``X-Consul-Token``.
* ``CONSUL_HTTP_TOKEN`` overrides an explicit ``token=``: the token is set on the client after
  construction, so configuration wins over ambient environment.
* ``X-Consul-Index`` arrives as a string: converted with ``int()`` and clamped to >= 1.
* ``index=0`` is silently not sent (a non-blocking read), which is exactly the port's meaning of 0.
* ``session.create`` asserts ``ttl >= 10`` client-side and rounds nothing we need, so sessions are
  created with a direct request; the agent enforces its own ``session_ttl_min``.
* The namespace (Consul Enterprise ``ns``) rides on the requests session's default params, so every
  call (py-consul's and ours) carries it.

Failures: connection errors, timeouts and 5xx raise ``StoreUnavailable`` (retryable); a 500
``invalid session`` raises ``SessionInvalid``; 401/403 raise ``StoreError`` naming the token setting.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import consul
import requests

from leoflow.config import StoreConfig
from leoflow.store import keys, limits
from leoflow.store.port import (
    Behavior,
    Cas,
    CheckIndex,
    CheckNotExists,
    CheckSession,
    Delete,
    DeleteCas,
    Entry,
    Get,
    Op,
    SessionInvalid,
    Set,
    StoreError,
    StoreUnavailable,
    TooManyOperations,
    TxnError,
    TxnResult,
    ValueTooLarge,
    WatchResult,
)
from leoflow.store.sqlite import rollup

T = TypeVar("T")
MAX_WAIT = 600.0

_VERBS: dict[type, str] = {
    Set: "set", Cas: "cas", Delete: "delete", DeleteCas: "delete-cas", CheckIndex: "check-index",
    CheckSession: "check-session", CheckNotExists: "check-not-exists", Get: "get",
}
# Verbs for which Consul returns one result entry (txn.go: every verb that leaves ``entry`` set).
_RESULT_VERBS = frozenset({"set", "cas", "get", "check-index", "check-session"})


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string Consul parses ("15s", "0.25s", "0s")."""
    if seconds <= 0:
        return "0s"
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _index(value: Any) -> int:
    try:
        return max(int(value), 1)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"consul returned a non-numeric index {value!r}") from exc


def _entry(item: dict[str, Any], value: bytes | None = None) -> Entry:
    raw = item.get("Value")
    if value is None:
        if raw is None:
            value = b""
        elif isinstance(raw, bytes):
            value = raw  # py-consul already decoded it
        else:
            value = base64.b64decode(raw)
    return Entry(
        key=item["Key"], value=value, create_index=int(item.get("CreateIndex", 0)),
        modify_index=int(item.get("ModifyIndex", 0)), lock_index=int(item.get("LockIndex", 0)),
        flags=int(item.get("Flags", 0)), session=item.get("Session") or None,
    )


POOL_SIZE = 64  # keep-alive connections to the agent per process (blocking queries hold one each)


class ConsulStore:
    """The production ``Store``. One instance per process; thread-safe for concurrent calls."""

    def __init__(
        self,
        addr: str = "http://127.0.0.1:8500",
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        datacenter: str | None = None,
        namespace: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(addr if "://" in addr else f"http://{addr}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"config key store.consul_addr: expected http(s)://host:port, got {addr!r}")
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 8500)
        # trust_env is off below, so the CA-bundle environment requests would read is read here.
        verify: bool | str = ca_file or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        cert: tuple[str, str] | str | None = None
        if cert_file:
            cert = (cert_file, key_file) if key_file else cert_file
        self._client = consul.Consul(
            host=parts.hostname, port=port, scheme=scheme, dc=datacenter or None, verify=verify, cert=cert,
            connections_timeout=timeout,
        )
        # py-consul reads CONSUL_HTTP_TOKEN *over* token=; configuration must win.
        self._client.token = token or None
        self._token = token or None
        self._http: requests.Session = self._client.http.session
        # requests re-reads the proxy environment on every request (a scan of every environment
        # variable: ~0.4 ms, half the client's CPU per KV read). Resolve it once for this address
        # and keep honouring HTTP(S)_PROXY / NO_PROXY.
        self._http.proxies = requests.utils.get_environ_proxies(self._client.http.base_uri)
        self._http.trust_env = False
        # Each projection or mirror holds a connection in its blocking query (six in the API
        # server) besides the request threads; requests' default pool of 10 would then open and
        # drop a connection per request.
        pooled = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self._http.mount("http://", pooled)
        self._http.mount("https://", pooled)
        if namespace:
            self._http.params = {**(self._http.params or {}), "ns": namespace}  # type: ignore[dict-item]
        self._base = self._client.http.base_uri
        self._verify = verify
        self._cert = cert
        self._timeout = timeout
        self._dc = datacenter or None

    @classmethod
    def from_config(cls, cfg: StoreConfig) -> ConsulStore:
        token = cfg.consul_token
        if not token and cfg.consul_token_file:
            try:
                token = Path(cfg.consul_token_file).read_text().strip()
            except OSError as exc:
                raise StoreError(f"config key store.consul_token_file: cannot read {cfg.consul_token_file}: "
                                 f"{exc.strerror}") from exc
        return cls(
            cfg.consul_addr, token=token or None, ca_file=cfg.consul_ca_file or None,
            cert_file=cfg.consul_cert_file or None, key_file=cfg.consul_key_file or None,
            datacenter=cfg.consul_datacenter or None, namespace=cfg.consul_namespace or None,
            timeout=cfg.consul_timeout,
        )

    # -- error mapping -----------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise StoreUnavailable(f"consul {self._base}: {what}: {type(exc).__name__}") from exc
        except (consul.ACLPermissionDenied, consul.ACLDisabled) as exc:
            raise StoreError(f"consul {what}: permission denied (check store.consul_token): {exc}") from exc
        except consul.ConsulException as exc:
            self._raise_text(what, str(exc))

    def _raise_text(self, what: str, text: str) -> None:
        status, _, body = text.partition(" ")
        if "invalid session" in body:
            raise SessionInvalid(f"consul {what}: {body}")
        if status.isdigit() and int(status) == 413:
            raise ValueTooLarge(f"consul {what}: {body}")
        if status.isdigit() and int(status) >= 500:
            if "Invalid" in body:  # RPC validation errors surface as 500 (e.g. session TTL bounds)
                raise StoreError(f"consul {what}: {body}")
            raise StoreUnavailable(f"consul {what}: HTTP {status}: {body[:200]}")
        raise StoreError(f"consul {what}: {text[:300]}")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._errors(what):
            return fn()
        raise AssertionError("unreachable")  # pragma: no cover - _errors always raises or returns

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 params: dict[str, str] | None = None) -> requests.Response:
        headers = {"X-Consul-Token": self._token} if self._token else {}
        query = dict(params or {})
        if self._dc:
            query["dc"] = self._dc
        try:
            response = self._http.request(
                method, self._base + path, data=body, params=query, headers=headers, verify=self._verify,
                cert=self._cert, timeout=self._timeout,
            )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise StoreUnavailable(f"consul {self._base}: {method} {path}: {type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise StoreError(f"consul {path}: permission denied (check store.consul_token): {response.text[:200]}")
        if response.status_code >= 500 and "invalid session" in response.text:
            raise SessionInvalid(f"consul {path}: {response.text[:200]}")
        if response.status_code >= 500 and "Invalid" in response.text:
            raise StoreError(f"consul {path}: {response.text[:300]}")
        if response.status_code >= 500:
            raise StoreUnavailable(f"consul {path}: HTTP {response.status_code}: {response.text[:200]}")
        return response

    # -- KV ----------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        keys.validate_key(key)
        _, item = self._call(f"get {key!r}", lambda: self._client.kv.get(key))
        return _entry(item) if item else None

    def list(self, prefix: str) -> list[Entry]:
        keys.validate_prefix(prefix)
        _, items = self._call(f"list {prefix!r}", lambda: self._client.kv.get(prefix, recurse=True))
        return sorted((_entry(i) for i in items or []), key=lambda e: e.key)

    def keys(self, prefix: str, separator: str | None = "/") -> list[str]:
        keys.validate_prefix(prefix)
        _, names = self._call(
            f"keys {prefix!r}", lambda: self._client.kv.get(prefix, keys=True, separator=separator or None)
        )
        return rollup(prefix, names or [], separator)

    def put(
        self,
        key: str,
        value: bytes,
        *,
        cas: int | None = None,
        flags: int = 0,
        acquire: str | None = None,
        release: str | None = None,
    ) -> bool:
        limits.check_put(key, value, cas, flags, acquire, release)
        return bool(self._call(
            f"put {key!r}",
            lambda: self._client.kv.put(key, bytes(value), cas=cas, flags=flags, acquire=acquire, release=release),
        ))

    def delete(self, key: str, *, cas: int | None = None, recurse: bool = False) -> bool:
        if recurse:
            limits.check_delete_tree(key, cas)
        else:
            keys.validate_key(key)
        if cas is not None:
            limits.check_index(f"cas for key {key!r}", cas)
        return bool(self._call(
            f"delete {key!r}", lambda: self._client.kv.delete(key, cas=cas, recurse=recurse or None)
        ))

    def txn(self, ops: Sequence[Op]) -> TxnResult:
        limits.check_txn(ops)
        payload: list[dict[str, Any]] = []
        for op in ops:
            kv: dict[str, Any] = {"Verb": _VERBS[type(op)], "Key": op.key}
            if isinstance(op, Set | Cas):
                kv["Value"] = base64.b64encode(bytes(op.value)).decode()
                kv["Flags"] = op.flags
            if isinstance(op, Cas | DeleteCas | CheckIndex):
                kv["Index"] = op.index
            if isinstance(op, CheckSession):
                kv["Session"] = op.session
            payload.append({"KV": kv})
        response = self._request("PUT", "/v1/txn", body=json.dumps(payload).encode())
        if response.status_code == 413:
            text = response.text
            cls = TooManyOperations if "too many operations" in text else ValueTooLarge
            raise cls(f"consul txn refused: {text[:300]}")
        if response.status_code not in (200, 409):
            raise StoreError(f"consul txn: HTTP {response.status_code}: {response.text[:300]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise StoreUnavailable(f"consul txn: undecodable answer: {response.text[:200]}") from exc
        if response.status_code == 409:
            errors = tuple(TxnError(int(e.get("OpIndex", 0)), str(e.get("What", ""))) for e in data.get("Errors") or [])
            return TxnResult(ok=False, errors=errors or (TxnError(0, "transaction rolled back"),))
        raw_results = [r["KV"] for r in data.get("Results") or [] if "KV" in r]
        results: list[Entry] = []
        written = 0
        cursor = 0
        for op in ops:
            verb = _VERBS[type(op)]
            if verb not in _RESULT_VERBS:
                continue
            item = raw_results[cursor]
            cursor += 1
            if isinstance(op, Set | Cas):
                results.append(_entry(item, value=bytes(op.value)))
                written = max(written, results[-1].modify_index)
            elif isinstance(op, Get):
                results.append(_entry(item))
        return TxnResult(ok=True, results=tuple(results), index=written)

    def watch(self, key: str, *, index: int, wait: float, recurse: bool = False) -> WatchResult:
        if recurse:
            keys.validate_prefix(key)
        else:
            keys.validate_key(key)
        limits.check_index("watch index", index)
        wait = max(0.0, min(wait, MAX_WAIT))
        blocking = index > 0 and wait > 0
        raw_index, data = self._call(
            f"watch {key!r}",
            lambda: self._client.kv.get(
                key, index=str(index) if blocking else None, wait=go_duration(wait) if blocking else None,
                recurse=recurse,
            ),
        )
        if data is None:
            entries: tuple[Entry, ...] = ()
        elif isinstance(data, dict):
            entries = (_entry(data),)
        else:
            entries = tuple(sorted((_entry(i) for i in data), key=lambda e: e.key))
        return WatchResult(_index(raw_index), entries)

    # -- sessions ----------------------------------------------------------------------------

    def session_create(
        self, *, name: str, ttl: float, behavior: Behavior = "release", lock_delay: float = 15.0
    ) -> str:
        if behavior not in ("release", "delete"):
            raise StoreError(f"session {name!r}: behavior must be 'release' or 'delete', got {behavior!r}")
        if ttl <= 0 or lock_delay < 0:
            raise StoreError(f"session {name!r}: ttl must be > 0 and lock_delay >= 0")
        body = {"Name": name, "TTL": go_duration(ttl), "LockDelay": go_duration(lock_delay), "Behavior": behavior,
                "Checks": []}  # TTL-only: never tied to the serfHealth of whichever agent we talk to
        response = self._request("PUT", "/v1/session/create", body=json.dumps(body).encode())
        if response.status_code != 200:
            raise StoreError(f"consul session create {name!r}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return str(response.json()["ID"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"consul session create: undecodable answer {response.text[:200]}") from exc

    def session_renew(self, session: str) -> bool:
        with self._errors(f"session renew {session}"):
            try:
                self._client.session.renew(session)
            except consul.NotFound:  # 404: expired or destroyed; leadership is lost at once
                return False
        return True

    def session_destroy(self, session: str) -> None:
        self._call(f"session destroy {session}", lambda: self._client.session.destroy(session))

    def close(self) -> None:
        self._http.close()
