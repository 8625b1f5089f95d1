"""An hvac client built only from what the caller passes: never ``~/.vault-token`` nor ``VAULT_*``.

hvac reads ``VAULT_TOKEN`` and then ``~/.vault-token`` when ``token`` is None, and ``VAULT_ADDR`` /
``VAULT_CACERT`` when the URL or ``verify`` is missing. A process that silently picks up an
operator's root token from a home directory is exactly what issue 8 forbids, so every Leoflow
client starts with an explicit (possibly empty) token, an explicit URL and an explicit ``verify``.
"""

from __future__ import annotations

from typing import Any

import hvac
import requests
from hvac import exceptions as hvac_exc

DEFAULT_TIMEOUT = 10.0


class VaultError(Exception):
    """A Vault call failed; the message says which call and why, never a token or secret value."""


class VaultUnavailable(VaultError):
    """Vault could not be reached or answered 5xx: worth retrying later."""


class VaultDenied(VaultError):
    """Vault refused the credentials (403/401): log in again or fix the policy."""


def make_client(addr: str, *, token: str = "", ca_file: str = "", timeout: float = DEFAULT_TIMEOUT,
                client_cert: tuple[str, str] | None = None) -> hvac.Client:
    if not addr:
        raise VaultError("config key vault.addr is required to talk to Vault")
    session = requests.Session()
    # No proxies or netrc from the environment for Vault traffic: credentials go to addr only.
    session.trust_env = False
    return hvac.Client(url=addr.rstrip("/"), token=token, verify=ca_file or True, timeout=timeout,
                       cert=client_cert, session=session)


def explain(exc: BaseException, what: str) -> VaultError:
    """Turn an hvac/requests error into a VaultError whose message names the call."""
    if isinstance(exc, VaultError):
        return exc
    if isinstance(exc, hvac_exc.Forbidden | hvac_exc.Unauthorized):
        return VaultDenied(f"{what}: Vault refused the request ({_errors(exc) or 'permission denied'})")
    if isinstance(exc, hvac_exc.InvalidPath):
        return VaultError(f"{what}: not found in Vault")
    if isinstance(exc, hvac_exc.InvalidRequest):
        return VaultError(f"{what}: Vault rejected the request ({_errors(exc) or 'invalid request'})")
    if isinstance(exc, hvac_exc.VaultDown | hvac_exc.InternalServerError | hvac_exc.BadGateway
                  | hvac_exc.RateLimitExceeded | hvac_exc.VaultNotInitialized):
        return VaultUnavailable(f"{what}: Vault is unavailable ({_errors(exc) or type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return VaultUnavailable(f"{what}: cannot reach Vault ({type(exc).__name__})")
    if isinstance(exc, hvac_exc.VaultError):
        return VaultError(f"{what}: {type(exc).__name__} ({_errors(exc) or 'no detail'})")
    return VaultError(f"{what}: {type(exc).__name__}: {exc}")


def _errors(exc: BaseException) -> str:
    errors: Any = getattr(exc, "errors", None)
    parts = errors if isinstance(errors, list) else [errors]
    text = "; ".join(str(e) for e in parts if e)
    # Vault wraps errors as "1 error occurred:\n\t* permission denied\n\n": one line is enough.
    text = " ".join(text.replace("* ", "").split())
    return text.removeprefix("1 error occurred: ")


def data(response: Any, what: str) -> dict[str, Any]:
    """The ``data`` object of a Vault answer, or a VaultError naming the call."""
    if not isinstance(response, dict) or not isinstance(response.get("data"), dict):
        raise VaultError(f"{what}: unexpected answer from Vault")
    return response["data"]
