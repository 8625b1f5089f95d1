"""Password hashing with scrypt (stdlib), self-describing so parameters can grow later.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. Verification is constant-time and an unknown
user still pays one hash (``verify_dummy``) so response time does not reveal which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

N, R, P = 2**14, 8, 1
_DKLEN = 32
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("password must not be empty")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=_MAXMEM
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


_DUMMY = f"scrypt${N}${R}${P}${_b64(b'0' * 16)}${_b64(b'0' * _DKLEN)}"


def verify_dummy(password: str) -> None:
    """Spend the same time as a real verification, for unknown or inactive users."""
    verify_password(password, _DUMMY)


def generate_password() -> str:
    return secrets.token_urlsafe(18)
