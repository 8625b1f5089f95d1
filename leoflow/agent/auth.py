"""Where the agent's bearer token comes from.

A source only has to answer ``token()`` with a currently valid JWT; the link asks before every
dial, so a refreshed token is used on the next (re)connect. The server ends a stream once the token
it was opened with expires (UNAUTHENTICATED); the link then redials with a fresh one, and running
tries carry on (their reports are persisted and resent). Sources today: a token file (rendered
and kept fresh by Vault Agent, or written by an operator) and a locally issued token (standalone,
adr/0041). Issue 8 adds a Vault source (AppRole login + ``identity/oidc/token/<role>``) behind the
same protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from leoflow.agentrpc.localkeys import LocalIssuer, LocalKeyPaths
from leoflow.config import Config


class TokenError(Exception):
    """No usable token; the message says where the agent looked (never the token)."""


class TokenSource(Protocol):
    def token(self) -> str: ...


class FileTokenSource:
    """Re-reads the file when it changes, so a Vault Agent rotation is picked up without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._token = ""

    def token(self) -> str:
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime, st.st_size)
                if stamp != self._stamp:
                    self._token = self.path.read_text().strip()
                    self._stamp = stamp
            except OSError as exc:
                raise TokenError(f"token file {self.path}: {exc.strerror or exc}") from exc
            if not self._token:
                raise TokenError(f"token file {self.path} is empty")
            return self._token


class LocalTokenSource:
    """Mints its own short-lived token with standalone's local key; refreshed at 2/3 of its life."""

    def __init__(self, issuer: LocalIssuer, agent_id: str, pools: tuple[str, ...], ttl: float = 900.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._issuer = issuer
        self._agent_id = agent_id
        self._pools = pools
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if now >= self._refresh_at:
                self._token = self._issuer.mint(self._agent_id, self._pools, ttl=self._ttl, now=now)
                self._refresh_at = now + self._ttl * 2 / 3
            return self._token


def token_source(config: Config, agent_id: str, pools: tuple[str, ...]) -> TokenSource:
    from leoflow.agent.vault_auth import vault_token_source

    vault = vault_token_source(config)  # [vault] addr + AppRole or token file (issue 8)
    if vault is not None:
        return vault
    if config.agent.token_file:
        return FileTokenSource(Path(config.agent.token_file))
    paths = LocalKeyPaths.under(config.home_path)
    if paths.private_key.exists():
        return LocalTokenSource(LocalIssuer(paths, audience=config.vault.audience), agent_id, pools)
    raise TokenError(
        "no agent token: set [agent] token_file (e.g. rendered by Vault Agent), or run on the standalone host "
        f"where {paths.private_key} exists"
    )
