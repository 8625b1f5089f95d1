"""Standalone's own token issuer: an EC P-256 key under LEOFLOW_HOME, published as a JWKS file.

Standalone has no Vault, yet agents must still prove who they are through the same verifier as in
production (adr/0041): this module plays Vault's part on one machine. The private key is written
with mode 0600 and never leaves the file; the server only ever reads the public JWKS.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from leoflow.agentrpc.jwks import write_private

LOCAL_ISSUER = "leoflow-standalone"
ALGORITHM = "ES256"


@dataclass(frozen=True)
class LocalKeyPaths:
    private_key: Path
    jwks: Path

    @classmethod
    def under(cls, home: Path) -> LocalKeyPaths:
        base = home / "agent-auth"
        return cls(private_key=base / "signing-key.pem", jwks=base / "jwks.json")


def ensure_keys(paths: LocalKeyPaths) -> None:
    """Create the key pair once; a second standalone start reuses it (tokens stay valid)."""
    if paths.private_key.exists() and paths.jwks.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(paths.private_key, pem)
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": uuid.uuid4().hex[:16], "use": "sig", "alg": ALGORITHM})
    paths.jwks.parent.mkdir(parents=True, exist_ok=True)
    paths.jwks.write_text(json.dumps({"keys": [jwk]}, indent=2))


class LocalIssuer:
    def __init__(self, paths: LocalKeyPaths, audience: str, issuer: str = LOCAL_ISSUER) -> None:
        ensure_keys(paths)
        self._key = serialization.load_pem_private_key(paths.private_key.read_bytes(), password=None)
        self._kid = json.loads(paths.jwks.read_text())["keys"][0]["kid"]
        self.audience = audience
        self.issuer = issuer

    def mint(self, agent_id: str, pools: tuple[str, ...] = ("*",), ttl: float = 900.0,
             now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"agent:{agent_id}",
            "agent_id": agent_id,
            "pools": list(pools),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + ttl),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})  # type: ignore[arg-type]
