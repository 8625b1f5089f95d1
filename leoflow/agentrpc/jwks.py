"""Where the public keys that verify agent tokens come from.

The verifier takes a *source*, not keys, so the same code checks a locally issued token
(standalone: a JWKS file under LEOFLOW_HOME) and a Vault identity token (Vault's
``/v1/identity/oidc/.well-known/keys``, issue 8). A source caches keys and is asked to refresh
when a token names a ``kid`` it does not know: key rotation then works without a restart, and a
flood of bogus ``kid`` values cannot turn into a flood of fetches (at most one per
``min_refresh_interval``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import requests
from jwt import PyJWK
from jwt.exceptions import PyJWKError

log = logging.getLogger(__name__)


class JwksError(Exception):
    """The key set could not be read or parsed; the message names the source."""


class JwksSource(Protocol):
    def get(self, kid: str | None) -> PyJWK | None:
        """The key with this ``kid`` (refreshing once when unknown); None when there is none."""
        ...


def parse_jwks(data: Mapping[str, Any], origin: str) -> dict[str | None, PyJWK]:
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise JwksError(f"{origin}: a JWKS needs a 'keys' list")
    out: dict[str | None, PyJWK] = {}
    for i, raw in enumerate(keys):
        if not isinstance(raw, Mapping):
            raise JwksError(f"{origin}: keys[{i}] is not an object")
        if raw.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK.from_dict(dict(raw))
        except PyJWKError as exc:
            # One unusable key (an unsupported kty, say) must not hide the others.
            log.warning("skipping unusable JWKS key", extra={"origin": origin, "index": i, "error": str(exc)})
            continue
        out[raw.get("kid")] = key
    return out


class _CachingSource:
    def __init__(self, loader: Callable[[], dict[str | None, PyJWK]], min_refresh_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, PyJWK] | None = None
        self._loaded_at = float("-inf")

    def _refresh_locked(self) -> None:
        self._keys = self._loader()
        self._loaded_at = self._clock()

    def get(self, kid: str | None) -> PyJWK | None:
        with self._lock:
            if self._keys is None:
                self._refresh_locked()
            assert self._keys is not None
            key = self._lookup(kid)
            if key is None and self._clock() - self._loaded_at >= self._min_refresh:
                try:
                    self._refresh_locked()
                except JwksError as exc:
                    log.warning("JWKS refresh failed; keeping the cached keys", extra={"error": str(exc)})
                key = self._lookup(kid)
            return key

    def _lookup(self, kid: str | None) -> PyJWK | None:
        assert self._keys is not None
        if kid is None:
            # A token without kid is accepted only when the set holds exactly one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


class FileJwksSource(_CachingSource):
    """A JWKS JSON file (standalone's local key, or a file rendered by Vault Agent)."""

    def __init__(self, path: Path, min_refresh_interval: float = 1.0) -> None:
        self.path = path
        super().__init__(self._load, min_refresh_interval)

    def _load(self) -> dict[str | None, PyJWK]:
        try:
            data = json.loads(self.path.read_text())
        except OSError as exc:
            raise JwksError(f"JWKS file {self.path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise JwksError(f"JWKS file {self.path}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
        return parse_jwks(data, str(self.path))


class UrlJwksSource(_CachingSource):
    """A JWKS served over HTTPS (Vault's ``identity/oidc/.well-known/keys``)."""

    def __init__(self, url: str, *, ca_file: str | None = None, timeout: float = 5.0,
                 min_refresh_interval: float = 10.0) -> None:
        self.url = url
        self._verify: bool | str = ca_file or True
        self._timeout = timeout
        super().__init__(self._load, min_refresh_interval)

    def _load(self) -> dict[str | None, PyJWK]:
        try:
            resp = requests.get(self.url, timeout=self._timeout, verify=self._verify)
            resp.raise_for_status()
            data = resp.json()
        except requests.RequestException as exc:
            raise JwksError(f"JWKS {self.url}: {exc}") from exc
        except ValueError as exc:
            raise JwksError(f"JWKS {self.url}: not JSON ({exc})") from exc
        return parse_jwks(data, self.url)


def write_private(path: Path, data: bytes) -> None:
    """Create or replace a secret file with mode 0600 from the first byte (no window at 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
