"""Connections and variables from Vault KV v2 in Airflow's layout, with the store as fallback (adr/0092).

Layout (Airflow's ``VaultBackend``): ``<kv_mount>/<connections_path>/<conn_id>`` holds either
``{"conn_uri": "..."}`` or the connection fields (``conn_type, host, login, password, schema,
port, extra``); ``<kv_mount>/<variables_path>/<key>`` holds ``{"value": "..."}``. Lookup order is
Airflow's: the secrets backend first, then the metastore (here: the store).

A path Vault does not have falls back to the store. Vault *failing* (unreachable, permission
denied) does not: the caller gets :class:`SecretsUnavailable` and retries later, because quietly
using a store value that Vault is meant to override would hand a task the wrong credentials.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hvac
from hvac import exceptions as hvac_exc

from leoflow.api.public._secrets import is_sensitive
from leoflow.config import VaultConfig
from leoflow.domain.records import Connection, Variable
from leoflow.secrets.airflow import connection_from_vault, connection_uri
from leoflow.secrets.login import VaultSession
from leoflow.secrets.vault import VaultError, explain
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]+")


class SecretsUnavailable(Exception):
    """Vault could not answer (down, or our token lacks the policy): retry, do not fall back."""


class SecretMissing(Exception):
    """Declared but found nowhere (neither Vault nor the store); the message names both places."""


@dataclass(frozen=True)
class ResolvedConnection:
    conn_id: str
    uri: str
    source: str  # "vault:<mount>/<path>" or "store"
    connection: Connection | None  # None when Vault holds a conn_uri
    secrets: tuple[str, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class ResolvedVariable:
    key: str
    value: str = field(repr=False)
    source: str
    secrets: tuple[str, ...] = field(repr=False, default=())


def _extra_secrets(extra: str | None) -> list[str]:
    if not extra:
        return []
    try:
        parsed = json.loads(extra)
    except (json.JSONDecodeError, ValueError):
        return []
    out: list[str] = []

    def walk(value: Any, name: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif name is not None and is_sensitive(name) and value is not None:
            out.append(str(value))

    walk(parsed, None)
    return out


def connection_secrets(conn: Connection | None, uri: str) -> tuple[str, ...]:
    found = [uri]
    if conn is not None:
        if conn.password:
            found.append(conn.password)
        found.extend(_extra_secrets(conn.extra))
    return tuple(found)


class VaultKv:
    """Reads Airflow-layout secrets from one KV v2 mount with a client from ``client_factory``."""

    def __init__(self, client_factory: Callable[[], hvac.Client], *, mount: str, connections_path: str,
                 variables_path: str) -> None:
        self._client = client_factory
        self.mount = mount
        self.connections_path = connections_path.strip("/")
        self.variables_path = variables_path.strip("/")

    def where(self, kind: str, ident: str) -> str:
        base = self.connections_path if kind == "connection" else self.variables_path
        return f"{self.mount}/{base}/{ident}"

    def _read(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            client = self._client()
        except VaultError as exc:
            raise SecretsUnavailable(f"{what}: {exc}") from exc
        try:
            answer = client.secrets.kv.v2.read_secret_version(path, mount_point=self.mount,
                                                              raise_on_deleted_version=False)
        except hvac_exc.InvalidPath:
            return None
        except Exception as exc:
            # Denied, down, or an answer we cannot read: all mean "ask again later", never "absent".
            raise SecretsUnavailable(str(explain(exc, what))) from exc
        inner = ((answer or {}).get("data") or {}).get("data")
        if inner is None:  # a deleted version: treat as absent
            return None
        if not isinstance(inner, dict):
            raise SecretsUnavailable(f"{what}: the secret is not a key/value object")
        return inner

    def connection(self, conn_id: str) -> Connection | str | None:
        value = self._read(f"{self.connections_path}/{conn_id}", f"read connection {conn_id!r} from Vault")
        if value is None:
            return None
        return connection_from_vault(conn_id, value)

    def variable(self, key: str) -> str | None:
        value = self._read(f"{self.variables_path}/{key}", f"read variable {key!r} from Vault")
        if value is None:
            return None
        found = value.get("value")
        if found is None:
            raise SecretsUnavailable(f"variable {key!r} in Vault ({self.where('variable', key)}) has no 'value' field")
        return found if isinstance(found, str) else json.dumps(found)

    def list_ids(self, kind: str) -> list[str]:
        base = self.connections_path if kind == "connection" else self.variables_path
        try:
            answer = self._client().secrets.kv.v2.list_secrets(base, mount_point=self.mount)
        except hvac_exc.InvalidPath:
            return []
        except Exception as exc:
            raise SecretsUnavailable(str(explain(exc, f"list {kind}s in Vault"))) from exc
        keys = ((answer or {}).get("data") or {}).get("keys") or []
        return sorted(k for k in keys if isinstance(k, str) and not k.endswith("/"))


class SecretsBackend:
    """Vault (when configured) then the store, for connections and variables."""

    def __init__(self, connections: ConnectionRepository | None, variables: VariableRepository | None,
                 vault: VaultKv | None = None) -> None:
        self.vault = vault
        self._connections = connections
        self._variables = variables

    def connection(self, conn_id: str) -> ResolvedConnection | None:
        if not _SAFE_ID.fullmatch(conn_id):
            raise SecretMissing(f"connection id {conn_id!r} is not valid")
        if self.vault is not None:
            found = self.vault.connection(conn_id)
            if found is not None:
                source = f"vault:{self.vault.where('connection', conn_id)}"
                if isinstance(found, str):
                    return ResolvedConnection(conn_id, found, source, None, connection_secrets(None, found))
                uri = connection_uri(found)
                return ResolvedConnection(conn_id, uri, source, found, connection_secrets(found, uri))
        stored = self._connections.get(conn_id) if self._connections is not None else None
        if stored is None:
            return None
        uri = connection_uri(stored.record)
        return ResolvedConnection(conn_id, uri, "store", stored.record, connection_secrets(stored.record, uri))

    def variable(self, key: str) -> ResolvedVariable | None:
        if not _SAFE_ID.fullmatch(key):
            raise SecretMissing(f"variable key {key!r} is not valid")
        if self.vault is not None:
            value = self.vault.variable(key)
            if value is not None:
                # From a secrets store: secret by definition.
                return ResolvedVariable(key, value, f"vault:{self.vault.where('variable', key)}", (value,))
        stored: Variable | None = None
        if self._variables is not None:
            found = self._variables.get(key)
            stored = found.record if found is not None else None
        if stored is None:
            return None
        secrets = (stored.value,) if is_sensitive(key) else ()
        return ResolvedVariable(key, stored.value, "store", secrets)

    def lookup(self, kind: str, ident: str) -> ResolvedConnection | ResolvedVariable | None:
        """``connection`` or ``variable`` by kind, for callers that walk both lists of declared ids."""
        return self.connection(ident) if kind == "connection" else self.variable(ident)

    def missing_message(self, kind: str, ident: str) -> str:
        places = ["the store"]
        if self.vault is not None:
            places.insert(0, f"Vault ({self.vault.where(kind, ident)})")
        return f"{kind} {ident!r} is declared by the task but was found in neither {' nor '.join(places)}"


def vault_kv(vault: VaultConfig, session: VaultSession | None) -> VaultKv | None:
    if session is None or not vault.secrets_enabled:
        return None
    return VaultKv(session.client, mount=vault.kv_mount, connections_path=vault.connections_path,
                   variables_path=vault.variables_path)
