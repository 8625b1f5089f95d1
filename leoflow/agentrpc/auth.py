"""Verifying agent bearer tokens: JWTs checked against a JWKS source, and the gRPC interceptor.

Rules (adr/0041): the algorithm must be on an asymmetric allow-list *and* match the key's type,
so ``alg: none`` and the HS256-with-the-public-key confusion are refused before any signature
check; issuer, audience, ``exp`` and ``nbf`` are required (small leeway for clock skew). A failure
is UNAUTHENTICATED with a short reason; the token itself is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from jwt.exceptions import InvalidTokenError

from leoflow.agentrpc.jwks import JwksError, JwksSource

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
DEFAULT_ALGORITHMS = ("ES256", "RS256", "EdDSA")
# Methods a load balancer or orchestrator may call without a token.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)

_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class AuthError(Exception):
    """Why a token was refused, phrased for the agent operator (never contains the token)."""


@dataclass(frozen=True)
class AgentIdentity:
    subject: str
    # The agent id the token is bound to (None: the token may register any id).
    agent_id: str | None
    # Pools this identity may serve; "*" means any.
    pools: frozenset[str]
    expires_at: float

    def may_serve(self, pool: str) -> bool:
        return "*" in self.pools or pool in self.pools


class TokenVerifier:
    def __init__(self, source: JwksSource, *, issuer: str, audience: str,
                 algorithms: Iterable[str] = DEFAULT_ALGORITHMS, leeway: float = 30.0,
                 clock: Callable[[], float] = time.time, cache_size: int = 256) -> None:
        algs = tuple(algorithms)
        bad = [a for a in algs if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"agent token algorithms must be asymmetric; not allowed: {', '.join(bad)}")
        if not issuer or not audience:
            raise ValueError("agent token verification needs both an issuer and an audience")
        self._source = source
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algs
        self._leeway = leeway
        self._clock = clock
        self._cache: OrderedDict[bytes, AgentIdentity] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def leeway(self) -> float:
        """Clock-skew allowance, also granted to a stream whose token runs out while it is open."""
        return self._leeway

    def verify(self, token: str) -> AgentIdentity:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached.expires_at + self._leeway > now:
                self._cache.move_to_end(digest)
                return cached
        identity = self._verify_uncached(token, now)
        with self._lock:
            self._cache[digest] = identity
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    def _verify_uncached(self, token: str, now: float) -> AgentIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError(f"token algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        try:
            key = self._source.get(kid if isinstance(kid, str) else None)
        except JwksError as exc:
            raise AuthError(f"signing keys unavailable: {exc}") from exc
        if key is None:
            raise AuthError(f"no signing key with kid {kid!r}")
        expected_kty = _KTY_FOR_ALG.get(alg[:2])
        if key.key_type != expected_kty:
            # The classic confusion: a token signed "HS256"/"ES256" against a key of another type.
            raise AuthError(f"token algorithm {alg} does not match the key type {key.key_type}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience is wrong") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer is wrong") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from exc
        except InvalidTokenError as exc:
            raise AuthError(f"token rejected: {type(exc).__name__}") from exc
        pools = claims.get("pools", [])
        if isinstance(pools, str):
            pools = [p for p in pools.split(",") if p]
        if not isinstance(pools, list) or not all(isinstance(p, str) for p in pools):
            raise AuthError("token 'pools' claim must be a list of strings")
        agent_id = claims.get("agent_id")
        return AgentIdentity(
            subject=str(claims["sub"]),
            agent_id=agent_id if isinstance(agent_id, str) and agent_id else None,
            pools=frozenset(pools),
            expires_at=float(claims["exp"]),
        )


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def identity_of(verifier: TokenVerifier, context: grpc.ServicerContext) -> AgentIdentity:
    """The caller's identity, or abort the call with UNAUTHENTICATED (cheap: verifications are cached)."""
    token = bearer_token(context.invocation_metadata())
    if token is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
    try:
        return verifier.verify(token)  # type: ignore[arg-type]
    except AuthError as exc:
        log.warning("agent token refused", extra={"reason": str(exc), "peer": context.peer()})
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        raise  # unreachable: abort raises


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call without a valid token before any servicer code runs (health excepted)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        method: str = handler_call_details.method
        if method.startswith(PUBLIC_METHOD_PREFIXES):
            return continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        reason: str | None = None
        if token is None:
            reason = "missing bearer token"
        else:
            try:
                self._verifier.verify(token)
            except AuthError as exc:
                reason = str(exc)
        if reason is None:
            return continuation(handler_call_details)
        log.warning("agent call refused", extra={"method": method, "reason": reason})
        handler = continuation(handler_call_details)
        return _deny(handler, reason)


def _deny(handler: Any, reason: str) -> Any:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
