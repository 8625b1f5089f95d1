"""A Vault session for a Leoflow process: log in, keep the token renewed, log in again when it cannot be.

Two ways in (issue 8):
- **AppRole**: a role id and a secret id read from files. The secret id file may hold a
  *response-wrapped* secret id (a single-use wrapping token): it is unwrapped once and the real
  secret id is kept in memory only, so the file on disk is worthless after the first start.
- **Token file**: a Vault token kept fresh by Vault Agent (its ``auto_auth`` sink). The file is
  re-read when it changes; renewing is Vault Agent's job.

The token is renewed at ``renew_fraction`` of its lease; when renewal is refused (max TTL reached,
token revoked) or the token is about to run out, the session logs in again. Nothing here ever
falls back to ``~/.vault-token`` or ``VAULT_TOKEN``: see :mod:`leoflow.secrets.vault`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hvac

from leoflow.config import VaultConfig
from leoflow.secrets.vault import VaultDenied, VaultError, data, explain, make_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginSettings:
    addr: str
    ca_file: str = ""
    role_id_file: str = ""
    secret_id_file: str = ""
    secret_id_wrapped: bool = False
    token_file: str = ""
    approle_mount: str = "approle"
    renew_fraction: float = 2 / 3
    timeout: float = 10.0

    @classmethod
    def from_config(cls, vault: VaultConfig) -> LoginSettings:
        return cls(addr=vault.addr, ca_file=vault.ca_file, role_id_file=vault.role_id_file,
                   secret_id_file=vault.secret_id_file, secret_id_wrapped=vault.secret_id_wrapped,
                   token_file=vault.token_file, approle_mount=vault.approle_mount)

    @property
    def configured(self) -> bool:
        return bool(self.addr and (self.token_file or self.role_id_file))


def _read_secret_file(path: str, key: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise VaultError(f"config key vault.{key}: cannot read {path}: {exc.strerror or exc}") from exc
    if not text:
        raise VaultError(f"config key vault.{key}: {path} is empty")
    return text


class VaultSession:
    """Thread-safe; ``client()`` always answers a client whose token is valid for a while longer."""

    def __init__(self, settings: LoginSettings, clock: Callable[[], float] = time.time) -> None:
        if not settings.addr:
            raise VaultError("config key vault.addr is required")
        if not (settings.token_file or settings.role_id_file):
            raise VaultError("set config key vault.role_id_file (+ vault.secret_id_file) for AppRole, "
                             "or vault.token_file for a token kept by Vault Agent")
        if settings.role_id_file and not settings.secret_id_file:
            raise VaultError("config key vault.secret_id_file is required with vault.role_id_file")
        self.settings = settings
        self._clock = clock
        self._lock = threading.RLock()
        self._client: hvac.Client | None = None
        self._secret_id: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._renewable = False
        self._file_stamp: tuple[float, int] | None = None
        self.logins = 0
        self.renewals = 0

    # -- public ---------------------------------------------------------------------------
    def client(self) -> hvac.Client:
        with self._lock:
            if self.settings.token_file:
                return self._from_token_file()
            now = self._clock()
            if self._client is None or now >= self._expires_at - 0.25:
                self._login()
            elif now >= self._renew_at:
                self._renew_or_login()
            assert self._client is not None
            return self._client

    def relogin(self) -> hvac.Client:
        """After Vault refused our token (revoked, say): forget it and log in afresh."""
        with self._lock:
            self._client = None
            self._file_stamp = None
            return self.client()

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def revoke(self) -> None:
        """On shutdown: an AppRole token nobody will use again should not live on in Vault."""
        with self._lock:
            if self._client is None or self.settings.token_file:
                return
            try:
                self._client.auth.token.revoke_self()
            except Exception as exc:  # best effort at exit
                log.info("could not revoke the Vault token", extra={"error": str(explain(exc, "revoke-self"))})
            self._client = None

    # -- AppRole ---------------------------------------------------------------------------
    def _approle_secret_id(self) -> str:
        if self._secret_id is not None:
            return self._secret_id
        raw = _read_secret_file(self.settings.secret_id_file, "secret_id_file")
        if not self.settings.secret_id_wrapped:
            return raw
        unwrapper = make_client(self.settings.addr, token=raw, ca_file=self.settings.ca_file,
                                timeout=self.settings.timeout)
        try:
            unwrapped = data(unwrapper.sys.unwrap(), "unwrap the secret id")
        except Exception as exc:
            err = explain(exc, "unwrap the secret id")
            if isinstance(err, VaultDenied) or "wrapping token" in str(err):
                raise VaultDenied(f"the wrapped secret id in {self.settings.secret_id_file} was already used or has "
                                  "expired: generate a new one (leoflow vault agent-secret-id)") from exc
            raise err from exc
        secret_id = unwrapped.get("secret_id")
        if not isinstance(secret_id, str) or not secret_id:
            raise VaultError(f"{self.settings.secret_id_file}: the wrapped answer holds no secret_id")
        # Single use: the wrapping token is spent; keep the secret id in memory for later logins.
        self._secret_id = secret_id
        return secret_id

    def _login(self) -> None:
        role_id = _read_secret_file(self.settings.role_id_file, "role_id_file")
        secret_id = self._approle_secret_id()
        client = make_client(self.settings.addr, ca_file=self.settings.ca_file, timeout=self.settings.timeout)
        try:
            answer = client.auth.approle.login(role_id, secret_id, mount_point=self.settings.approle_mount)
        except Exception as exc:
            err = explain(exc, "AppRole login")
            if isinstance(err, VaultDenied) or "invalid" in str(err).lower():
                raise VaultDenied(
                    f"AppRole login refused: the secret id in {self.settings.secret_id_file} is revoked, expired or "
                    f"used up, or the role id in {self.settings.role_id_file} is wrong ({err})") from exc
            raise err from exc
        auth = answer.get("auth") if isinstance(answer, dict) else None
        if not isinstance(auth, dict) or not auth.get("client_token"):
            raise VaultError("AppRole login: Vault answered without a token")
        self._client = client
        self._set_lease(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        self.logins += 1
        log.info("logged in to Vault with AppRole", extra={"ttl": auth.get("lease_duration"),
                                                           "policies": auth.get("token_policies")})

    def _set_lease(self, ttl: float, renewable: bool) -> None:
        now = self._clock()
        if ttl <= 0:  # a token without expiry (root-like): never renew
            self._expires_at = float("inf")
            self._renew_at = float("inf")
        else:
            self._expires_at = now + ttl
            self._renew_at = now + ttl * self.settings.renew_fraction
        self._renewable = renewable

    def _renew_or_login(self) -> None:
        assert self._client is not None
        if not self._renewable:
            self._login()
            return
        previous = self._expires_at
        try:
            answer = self._client.auth.token.renew_self()
            auth = answer.get("auth") if isinstance(answer, dict) else None
            ttl = float(auth.get("lease_duration") or 0) if isinstance(auth, dict) else 0.0
        except Exception as exc:
            log.warning("Vault token renewal failed; logging in again",
                        extra={"error": str(explain(exc, "renew-self"))})
            self._login()
            return
        self.renewals += 1
        self._set_lease(ttl, True)
        if ttl <= 0 or self._expires_at <= previous + 1.0:
            # Capped by the token's max TTL: renewing again buys nothing; log in before it runs out.
            self._renew_at = max(self._clock(), self._expires_at - max(1.0, ttl * (1 - self.settings.renew_fraction)))
            self._renewable = False

    # -- token file (Vault Agent) -----------------------------------------------------------
    def _from_token_file(self) -> hvac.Client:
        path = Path(self.settings.token_file)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise VaultError(f"config key vault.token_file: cannot read {path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime, st.st_size)
        if self._client is None or stamp != self._file_stamp:
            token = _read_secret_file(str(path), "token_file")
            self._client = make_client(self.settings.addr, token=token, ca_file=self.settings.ca_file,
                                       timeout=self.settings.timeout)
            self._file_stamp = stamp
            self._expires_at = float("inf")
            self.logins += 1
        return self._client


def session_from_config(vault: VaultConfig, clock: Callable[[], float] = time.time) -> VaultSession | None:
    """The configured session, or None when this process is not set up to log in to Vault."""
    settings = LoginSettings.from_config(vault)
    if not settings.configured:
        return None
    return VaultSession(settings, clock=clock)
