"""Vault as the second key source of the one agent-token verifier (adr/0041, adr/0091).

Given ``[vault] addr``, the issuer and the JWKS URL are *discovered* from Vault's unauthenticated
``/v1/identity/oidc/.well-known/openid-configuration``, so the server checks exactly the ``iss``
Vault writes (which depends on Vault's ``api_addr`` or ``identity/oidc/config``, easy to get wrong
by hand). An explicit ``[vault] jwks_url`` + ``issuer`` still wins (e.g. a Vault Agent proxy).
Keys are cached by :class:`~leoflow.agentrpc.jwks.UrlJwksSource` and re-fetched on an unknown
``kid`` (at most once per ``jwks_min_refresh``), so a rotation on the Vault side is followed
without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from leoflow.agentrpc.auth import DEFAULT_ALGORITHMS, TokenVerifier
from leoflow.agentrpc.jwks import UrlJwksSource
from leoflow.config import VaultConfig

DISCOVERY_PATH = "/v1/identity/oidc/.well-known/openid-configuration"


class VaultDiscoveryError(Exception):
    """Vault's OIDC discovery document could not be read; the message names the URL and config key."""


@dataclass(frozen=True)
class VaultOidc:
    issuer: str
    jwks_uri: str


def discover(addr: str, *, ca_file: str = "", timeout: float = 5.0) -> VaultOidc:
    url = addr.rstrip("/") + DISCOVERY_PATH
    try:
        with requests.Session() as http:
            http.trust_env = False
            resp = http.get(url, timeout=timeout, verify=ca_file or True)
        resp.raise_for_status()
        doc = resp.json()
    except requests.RequestException as exc:
        raise VaultDiscoveryError(f"config key vault.addr: cannot read {url}: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise VaultDiscoveryError(f"config key vault.addr: {url} did not answer JSON") from exc
    issuer, jwks = doc.get("issuer"), doc.get("jwks_uri")
    if not isinstance(issuer, str) or not isinstance(jwks, str) or not issuer or not jwks:
        raise VaultDiscoveryError(f"{url}: the discovery document lacks issuer or jwks_uri")
    return VaultOidc(issuer, jwks)


def vault_verifier(vault: VaultConfig, *, algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
                   leeway: float = 30.0) -> TokenVerifier | None:
    """A verifier reading Vault's JWKS, or None when ``[vault] addr`` is not set."""
    if vault.jwks_url or not vault.addr:
        return None
    oidc = discover(vault.addr, ca_file=vault.ca_file)
    issuer = vault.issuer or oidc.issuer
    source = UrlJwksSource(oidc.jwks_uri, ca_file=vault.ca_file or None,
                           min_refresh_interval=vault.jwks_min_refresh)
    return TokenVerifier(source, issuer=issuer, audience=vault.audience, algorithms=algorithms, leeway=leeway)
