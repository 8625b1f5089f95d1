"""Session/API tokens: HS256 JWTs (PyJWT) with the claims Airflow's auth managers mint.

Claims: ``sub`` (username), ``role``, ``iat``, ``nbf``, ``exp``, ``jti``, ``iss=leoflow``,
``aud=leoflow-user``. The role in the token is informative only: every request re-reads the user
from the store, so a deleted user or a lowered role takes effect at once.

The signing key comes from ``[auth] jwt_secret`` or ``jwt_secret_file``; in standalone (neither
set) a random key is generated once into ``$LEOFLOW_HOME/jwt_secret`` with mode 0600, so tokens
survive restarts and every gunicorn worker signs with the same key.
"""

from __future__ import annotations

import os
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from leoflow.config import Config

ISSUER = "leoflow"
VERIFIED_CACHE_SIZE = 4096
AUDIENCE = "leoflow-user"
_ALGORITHM = "HS256"


class TokenExpired(Exception):
    pass


class TokenInvalid(Exception):
    pass


@dataclass(frozen=True)
class Claims:
    username: str
    role: str
    jti: str
    expires_at: datetime


class TokenService:
    def __init__(self, secret: bytes, *, expiry_seconds: int, clock: Callable[[], datetime]) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT signing key must be at least 32 bytes")
        self._secret = secret
        self.expiry_seconds = expiry_seconds
        self._clock = clock
        # token -> (claims, exp, nbf) of a signature already checked: the same bytes verify the
        # same way, so a repeat only re-checks the times (a third of a request's CPU otherwise).
        self._verified: dict[str, tuple[Claims, float, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, username: str, role: str, *, expiry_seconds: int | None = None) -> str:
        now = int(self._clock().timestamp())
        ttl = self.expiry_seconds if expiry_seconds is None else expiry_seconds
        payload: dict[str, Any] = {
            "sub": username,
            "role": role,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(payload, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Claims:
        now = self._clock().timestamp()
        hit = self._verified.get(token)
        if hit is not None:
            return self._check_times(*hit, now)
        try:
            # PyJWT checks exp/nbf against the wall clock; we pass our clock via leeway-free manual checks.
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "jti"], "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(str(exc)) from exc
        try:
            exp = float(payload["exp"])
            nbf = float(payload.get("nbf", payload["iat"]))
        except (TypeError, ValueError) as exc:
            raise TokenInvalid("malformed time claims") from exc
        sub, role, jti = payload.get("sub"), payload.get("role", ""), payload.get("jti")
        if not isinstance(sub, str) or not isinstance(jti, str) or not isinstance(role, str):
            raise TokenInvalid("malformed claims")
        claims = Claims(username=sub, role=role, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC))
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest first
            self._verified[token] = (claims, exp, nbf)
        return self._check_times(claims, exp, nbf, now)

    @staticmethod
    def _check_times(claims: Claims, exp: float, nbf: float, now: float) -> Claims:
        if now >= exp:
            raise TokenExpired("token expired")
        if now + 5 < nbf:
            raise TokenInvalid("token not yet valid")
        return claims


def load_signing_key(config: Config) -> bytes:
    """The configured key, or the standalone one generated once under LEOFLOW_HOME (0600)."""
    from leoflow.secrets.session_key import load_session_key
    from leoflow.secrets.vault import VaultError

    try:
        shared = load_session_key(config)  # [vault] session_key_path: one key for every replica (adr/0094)
    except VaultError as exc:
        raise ValueError(f"[vault] session_key_path: {exc}") from exc
    if shared is not None:
        return shared
    auth = config.auth
    if auth.jwt_secret:
        return auth.jwt_secret.encode()
    if auth.jwt_secret_file:
        try:
            key = Path(auth.jwt_secret_file).read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"[auth] jwt_secret_file {auth.jwt_secret_file}: {exc.strerror}") from exc
        if not key:
            raise ValueError(f"[auth] jwt_secret_file {auth.jwt_secret_file} is empty")
        return key
    path = config.home_path / "jwt_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))
    return path.read_bytes().strip()
