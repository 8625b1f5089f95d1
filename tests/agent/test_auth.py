"""Agent token verification: the verifier alone, then over real gRPC (interceptor, health, claims)."""

from __future__ import annotations

import base64
import json
import logging
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from leoflow.agentrpc.auth import AuthError, TokenVerifier
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.agentrpc.jwks import FileJwksSource, JwksError, UrlJwksSource
from leoflow.agentrpc.localkeys import LOCAL_ISSUER, LocalIssuer, LocalKeyPaths, ensure_keys
from tests.agent.conftest import Rig

AUD = "leoflow-agents"


@pytest.fixture
def keys(tmp_path: Path) -> LocalKeyPaths:
    paths = LocalKeyPaths.under(tmp_path)
    ensure_keys(paths)
    return paths


def _verifier(paths: LocalKeyPaths, **kw: object) -> TokenVerifier:
    return TokenVerifier(FileJwksSource(paths.jwks, min_refresh_interval=0.0), issuer=LOCAL_ISSUER, audience=AUD,
                         **kw)  # type: ignore[arg-type]


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"iss": LOCAL_ISSUER, "aud": AUD, "sub": "agent:a1", "agent_id": "a1",
                               "pools": ["default"], "iat": now, "nbf": now, "exp": now + 300}
    base.update(over)
    return base


def _sign(paths: LocalKeyPaths, claims: dict[str, object], alg: str = "ES256", kid: str | None = None) -> str:
    key = serialization.load_pem_private_key(paths.private_key.read_bytes(), password=None)
    kid = kid or json.loads(paths.jwks.read_text())["keys"][0]["kid"]
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]


def test_key_files_are_private_and_reused(keys: LocalKeyPaths) -> None:
    assert stat.S_IMODE(keys.private_key.stat().st_mode) == 0o600
    before = keys.private_key.read_bytes()
    ensure_keys(keys)
    assert keys.private_key.read_bytes() == before
    assert "d" not in json.loads(keys.jwks.read_text())["keys"][0], "the JWKS must hold the public key only"


def test_valid_token_maps_claims(keys: LocalKeyPaths) -> None:
    token = LocalIssuer(keys, AUD).mint("a1", ("default", "gpu"))
    identity = _verifier(keys).verify(token)
    assert identity.agent_id == "a1"
    assert identity.subject == "agent:a1"
    assert identity.may_serve("gpu") and not identity.may_serve("other")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (_claims(exp=int(time.time()) - 3600), "token expired"),
        (_claims(nbf=int(time.time()) + 3600), "token not yet valid"),
        (_claims(aud="someone-else"), "token audience is wrong"),
        (_claims(iss="https://evil.example"), "token issuer is wrong"),
    ],
)
def test_bad_claims_are_refused(keys: LocalKeyPaths, claims: dict[str, object], reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        _verifier(keys).verify(_sign(keys, claims))


def test_small_clock_skew_is_tolerated(keys: LocalKeyPaths) -> None:
    token = _sign(keys, _claims(nbf=int(time.time()) + 5))
    assert _verifier(keys, leeway=30.0).verify(token).agent_id == "a1"


def test_missing_exp_is_refused(keys: LocalKeyPaths) -> None:
    claims = _claims()
    del claims["exp"]
    with pytest.raises(AuthError, match="'exp'"):
        _verifier(keys).verify(_sign(keys, claims))


def test_alg_none_is_refused(keys: LocalKeyPaths) -> None:
    def b64(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    with pytest.raises(AuthError, match="algorithm 'none' is not allowed"):
        _verifier(keys).verify(token)


def test_hs256_with_the_public_key_is_refused(keys: LocalKeyPaths) -> None:
    # The classic confusion: sign HMAC with the server's *public* key as the shared secret.
    public_jwk = json.loads(keys.jwks.read_text())["keys"][0]
    public_pem = ECAlgorithm.from_jwk(json.dumps(public_jwk)).public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": public_jwk["kid"]}

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(_claims()).encode())}"
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError, match="HS256"):
        _verifier(keys).verify(f"{signing_input}.{b64(sig)}")


def test_rs256_against_an_ec_key_is_refused(keys: LocalKeyPaths) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = json.loads(keys.jwks.read_text())["keys"][0]["kid"]
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(AuthError, match="does not match the key type"):
        _verifier(keys).verify(token)


def test_wrong_signature_is_refused(keys: LocalKeyPaths) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    kid = json.loads(keys.jwks.read_text())["keys"][0]["kid"]
    token = jwt.encode(_claims(), other, algorithm="ES256", headers={"kid": kid})
    with pytest.raises(AuthError, match="InvalidSignatureError"):
        _verifier(keys).verify(token)


def test_symmetric_algorithms_cannot_be_configured(keys: LocalKeyPaths) -> None:
    with pytest.raises(ValueError, match="HS256"):
        _verifier(keys, algorithms=("HS256",))


def test_key_rotation_is_followed_without_restart(keys: LocalKeyPaths) -> None:
    verifier = _verifier(keys)
    verifier.verify(LocalIssuer(keys, AUD).mint("a1"))
    new_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(new_key.public_key()))
    jwk.update({"kid": "rotated", "alg": "ES256", "use": "sig"})
    doc = json.loads(keys.jwks.read_text())
    doc["keys"].append(jwk)
    keys.jwks.write_text(json.dumps(doc))
    token = jwt.encode(_claims(), new_key, algorithm="ES256", headers={"kid": "rotated"})
    assert verifier.verify(token).agent_id == "a1"
    with pytest.raises(AuthError, match=r"no signing key with kid 'unknown'"):
        verifier.verify(jwt.encode(_claims(), new_key, algorithm="ES256", headers={"kid": "unknown"}))


class _JwksHandler(BaseHTTPRequestHandler):
    body = b"{}"
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_http() -> Iterator[tuple[str, type[_JwksHandler]]]:
    handler = type("H", (_JwksHandler,), {"body": b"{}", "hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/identity/oidc/.well-known/keys", handler
    finally:
        server.shutdown()


def test_jwks_url_source_verifies_rsa_tokens_and_refetches_on_unknown_kid(jwks_http: tuple[str, type]) -> None:
    url, handler = jwks_http
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, object]:
        doc = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        doc.update({"kid": kid, "alg": "RS256", "use": "sig"})
        return doc

    handler.body = json.dumps({"keys": [jwk(k1, "k1")]}).encode()
    verifier = TokenVerifier(UrlJwksSource(url, min_refresh_interval=0.0),
                             issuer="https://vault.example/v1/identity/oidc", audience=AUD)
    claims = _claims(iss="https://vault.example/v1/identity/oidc")
    assert verifier.verify(jwt.encode(claims, k1, algorithm="RS256", headers={"kid": "k1"})).subject == "agent:a1"
    handler.body = json.dumps({"keys": [jwk(k1, "k1"), jwk(k2, "k2")]}).encode()
    hits = handler.hits
    assert verifier.verify(jwt.encode(claims, k2, algorithm="RS256", headers={"kid": "k2"})).agent_id == "a1"
    assert handler.hits == hits + 1


def test_jwks_url_errors_name_the_url() -> None:
    source = UrlJwksSource("http://127.0.0.1:9/keys", timeout=0.5)
    with pytest.raises(JwksError, match=r"127\.0\.0\.1:9"):
        source.get("x")


# -- over real gRPC ----------------------------------------------------------------------------


def _register(port: int, token: str | None, agent_id: str = "a1",
              pools: tuple[str, ...] = ("default",)) -> pb.RegisterResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        return stub.Register(pb.RegisterRequest(agent_id=agent_id, pools=list(pools), capacity=1, version="t"),
                             metadata=metadata, timeout=5)


def test_grpc_refuses_missing_and_bad_tokens_without_logging_them(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    paths = LocalKeyPaths.under(rig.home)
    with pytest.raises(grpc.RpcError) as missing:
        _register(rig.port, None)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    expired = _sign(paths, _claims(exp=int(time.time()) - 3600))
    with caplog.at_level(logging.WARNING), pytest.raises(grpc.RpcError) as bad:
        _register(rig.port, expired)
    assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert bad.value.details() == "token expired"
    everything = " ".join(str(v) for r in caplog.records for v in r.__dict__.values())
    assert expired.split(".")[2] not in everything, "the token (or its signature) was logged"
    assert any(getattr(r, "reason", "") == "token expired" for r in caplog.records)


def test_grpc_permission_denied_for_pools_and_ids_outside_the_token(rig: Rig) -> None:
    token = rig.issuer().mint("a1", ("default",))
    assert _register(rig.port, token).session_id
    with pytest.raises(grpc.RpcError) as pool:
        _register(rig.port, token, pools=("gpu",))
    assert pool.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "gpu" in (pool.value.details() or "")
    with pytest.raises(grpc.RpcError) as other:
        _register(rig.port, token, agent_id="someone-else")
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_health_service_needs_no_token(rig: Rig) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{rig.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "leoflow.agent.v1.AgentService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
