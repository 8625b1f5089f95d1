"""How the API shows a connection or variable that comes from Vault (adr/0092).

The API never reveals secret values and always says where a value comes from: a record from
Vault is rendered through the API's usual shaper after two changes made here. Its description is
prefixed with the Vault path (``[Vault: secret/leoflow/connections/pg]``), so the Airflow UI's
list shows it without any UI change, and a variable's value is replaced by ``***`` whatever its
key (a value in a secrets store is a secret). Store records are shown unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import parse_qsl, unquote, urlsplit

from leoflow.config import Config
from leoflow.domain.records import Connection, Variable
from leoflow.secrets.airflow import EXTRA_KEY
from leoflow.secrets.backend import ResolvedConnection, ResolvedVariable, SecretsBackend, vault_kv
from leoflow.secrets.login import session_from_config
from leoflow.secrets.masking import REPLACEMENT
from leoflow.store.repos import Repositories

VAULT_PREFIX = "vault:"


def marker(source: str) -> str:
    return f"[Vault: {source.removeprefix(VAULT_PREFIX)}]" if source.startswith(VAULT_PREFIX) else ""


def _describe(description: str | None, source: str) -> str | None:
    mark = marker(source)
    if not mark:
        return description
    return f"{mark} {description}" if description else mark


def _from_uri(conn_id: str, uri: str) -> Connection:
    """Airflow's URI parsing, enough to show the parts; the password is never carried over."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = query.get(EXTRA_KEY)
    if extra is None and query:
        extra = json.dumps(query)
    try:
        port = parts.port
    except ValueError:
        port = None
    return Connection(connection_id=conn_id, conn_type=parts.scheme.replace("-", "_"),
                      host=unquote(parts.hostname) if parts.hostname else None,
                      login=unquote(parts.username) if parts.username else None,
                      password=REPLACEMENT if parts.password else None,
                      schema=unquote(parts.path[1:]) if parts.path.startswith("/") and len(parts.path) > 1 else None,
                      port=port, extra=extra)


def connection_view(resolved: ResolvedConnection) -> Connection:
    """The record to render (the API masks ``password`` and sensitive ``extra`` keys as usual)."""
    conn = resolved.connection if resolved.connection is not None else _from_uri(resolved.conn_id, resolved.uri)
    return dataclasses.replace(conn, connection_id=resolved.conn_id,
                               description=_describe(conn.description, resolved.source))


def variable_view(resolved: ResolvedVariable, description: str | None = None) -> Variable:
    if not resolved.source.startswith(VAULT_PREFIX):
        return Variable(key=resolved.key, value=resolved.value, description=description)
    return Variable(key=resolved.key, value=REPLACEMENT, description=_describe(description, resolved.source))


def api_backend(config: Config, repos: Repositories) -> SecretsBackend | None:
    """The backend the API reads through, or None when Vault is not configured (store only, as before)."""
    kv = vault_kv(config.vault, session_from_config(config.vault))
    if kv is None:
        return None
    return SecretsBackend(repos.connections, repos.variables, kv)
