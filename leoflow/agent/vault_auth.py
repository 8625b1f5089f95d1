"""The agent's bearer token from Vault: an identity token (JWT) for the agent's OIDC role.

``VaultTokenSource`` satisfies :class:`leoflow.agent.auth.TokenSource`. It logs in through a
:class:`leoflow.secrets.login.VaultSession` (AppRole or a Vault Agent token file), asks
``identity/oidc/token/<role>`` for a JWT and hands it out until about 2/3 of its life has passed.
The link reads ``token()`` before each dial and the value is attached as per-call metadata, so a
refreshed JWT never touches a stream that is already open or a task that is running: it is simply
what the next call carries.

Failure policy: when Vault refuses our Vault token (revoked, expired) we log in again once; when
Vault is unreachable we keep handing out the current JWT while it is still valid (a Vault blip
must not disconnect a fleet) and only then fail with a message that says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from leoflow.agent.auth import TokenError
from leoflow.config import Config
from leoflow.secrets.login import VaultSession, session_from_config
from leoflow.secrets.vault import VaultDenied, VaultError, data, explain

log = logging.getLogger(__name__)


class VaultTokenSource:
    def __init__(self, session: VaultSession, role: str, *, refresh_fraction: float = 2 / 3,
                 clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.role = role
        self.refresh_fraction = refresh_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self.fetches = 0

    @property
    def refresh_at(self) -> float:
        return self._refresh_at

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token and now < self._refresh_at:
                return self._token
            try:
                self._fetch(now)
            except VaultError as exc:
                if self._token and now < self._expires_at - 5.0:
                    log.warning("could not refresh the identity token; using the current one until it expires",
                                extra={"error": str(exc), "expires_in": round(self._expires_at - now, 1)})
                    self._refresh_at = now + min(10.0, max(1.0, (self._expires_at - now) / 4))
                    return self._token
                raise TokenError(f"no agent identity token from Vault: {exc}") from exc
            return self._token

    def _fetch(self, now: float) -> None:
        what = f"identity token for role {self.role!r}"
        for attempt in (1, 2):
            client = self.session.client() if attempt == 1 else self.session.relogin()
            try:
                answer = data(client.secrets.identity.generate_signed_id_token(self.role), what)
                break
            except Exception as exc:
                err = explain(exc, what)
                if "no entity" in str(err):
                    raise VaultError(f"{what}: this Vault token has no entity (a root or orphan token cannot get "
                                     "identity tokens; log in with the agent's AppRole)") from exc
                if isinstance(err, VaultDenied) and attempt == 1:
                    log.info("Vault refused our token; logging in again")
                    continue
                raise err from exc
        token, ttl = answer.get("token"), float(answer.get("ttl") or 0)
        if not isinstance(token, str) or not token or ttl <= 0:
            raise VaultError(f"{what}: Vault answered without a token")
        self._token = token
        self._expires_at = now + ttl
        self._refresh_at = now + ttl * self.refresh_fraction
        self.fetches += 1
        log.info("agent identity token refreshed", extra={"ttl": ttl})

    def keep_fresh(self, stop: threading.Event) -> None:
        """Refresh ahead of need on a thread of its own, so the Vault token keeps being renewed
        (an agent holding one stream for days never calls ``token()``) and a dial never waits."""
        while not stop.is_set():
            try:
                self.token()
            except TokenError as exc:
                log.error("agent identity token unavailable", extra={"error": str(exc)})
            with self._lock:
                wait = max(1.0, self._refresh_at - self._clock())
            stop.wait(min(wait, 60.0))


def vault_token_source(config: Config, clock: Callable[[], float] = time.time) -> VaultTokenSource | None:
    """The Vault source when ``[vault]`` holds login settings, else None (file or local token)."""
    try:
        session = session_from_config(config.vault, clock=clock)
    except VaultError as exc:
        raise TokenError(str(exc)) from exc
    if session is None:
        if config.vault.addr and not config.agent.token_file:
            # With Vault configured, silently minting a local standalone token would be a surprise.
            raise TokenError("config key vault.addr is set but the agent has no Vault login: set "
                             "vault.role_id_file + vault.secret_id_file (AppRole) or vault.token_file "
                             "(Vault Agent), or agent.token_file")
        return None
    return VaultTokenSource(session, config.vault.identity_role, clock=clock)
