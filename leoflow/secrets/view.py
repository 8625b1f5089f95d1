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
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from leoflow.api import problem
from leoflow.config import Config
from leoflow.domain.records import Connection, Variable
from leoflow.secrets.airflow import EXTRA_KEY
from leoflow.secrets.backend import (
    ResolvedConnection,
    ResolvedVariable,
    SecretsBackend,
    SecretsUnavailable,
    vault_kv,
)
from leoflow.secrets.login import session_from_config
from leoflow.secrets.masking import REPLACEMENT
from leoflow.store.repos import Repositories
from leoflow.store.repos.base import Versioned

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


# -- what the API handlers call (one line each; a no-op without Vault) ------------------------------
_ATTR = "_leoflow_vault_backend"
_LOCK = threading.Lock()


def backend_for(ctx: Any) -> SecretsBackend | None:
    """The API context's backend, built once and kept on the context (None without Vault: the
    handlers then behave exactly as before)."""
    with _LOCK:
        if _ATTR not in vars(ctx):
            object.__setattr__(ctx, _ATTR, api_backend(ctx.config, ctx.repos))
        return vars(ctx)[_ATTR]  # type: ignore[no-any-return]


def _unavailable(exc: Exception) -> problem.Problem:
    return problem.Problem(503, f"Vault is unavailable: {exc}", type_="vault-unavailable")


def vault_connection(ctx: Any, conn_id: str) -> Connection | None:
    """The connection as the API may show it when Vault holds it; None when Vault does not (or is off)."""
    backend = backend_for(ctx)
    if backend is None or backend.vault is None:
        return None
    try:
        found = backend.vault.connection(conn_id)
    except (SecretsUnavailable, ValueError) as exc:
        raise _unavailable(exc) from exc
    if found is None:
        return None
    source = f"vault:{backend.vault.where('connection', conn_id)}"
    if isinstance(found, str):
        return connection_view(ResolvedConnection(conn_id, found, source, None))
    return connection_view(ResolvedConnection(conn_id, "", source, found))


def vault_variable(ctx: Any, key: str) -> Variable | None:
    backend = backend_for(ctx)
    if backend is None or backend.vault is None:
        return None
    try:
        value = backend.vault.variable(key)
    except SecretsUnavailable as exc:
        raise _unavailable(exc) from exc
    if value is None:
        return None
    return variable_view(ResolvedVariable(key, value, f"vault:{backend.vault.where('variable', key)}"))


KINDS = ("connection", "variable")


def held(ctx: Any, kind: str, ident: str) -> Any:
    """The record to show when Vault holds ``ident`` (a connection or variable); None otherwise."""
    if kind == "connection":
        return vault_connection(ctx, ident)
    if kind == "variable":
        return vault_variable(ctx, ident)
    return None


def with_vault(ctx: Any, kind: str, stored: list[Versioned[Any]]) -> list[Versioned[Any]]:
    """A collection listing with Vault's records added; a Vault record shadows a store one (Airflow's order)."""
    backend = backend_for(ctx) if kind in KINDS else None
    if backend is None or backend.vault is None:
        return stored
    try:
        ids = backend.vault.list_ids(kind)
    except SecretsUnavailable as exc:
        raise _unavailable(exc) from exc
    shown: dict[str, Versioned[Any]] = {}
    for ident in ids:
        record = vault_connection(ctx, ident) if kind == "connection" else vault_variable(ctx, ident)
        if record is not None:
            shown[ident] = Versioned(record, 0, 0)
    id_of = (lambda r: r.connection_id) if kind == "connection" else (lambda r: r.key)
    return [v for v in stored if id_of(v.record) not in shown] + list(shown.values())


def held_message(ctx: Any, kind: str, ident: str) -> str:
    backend = backend_for(ctx)
    where = backend.vault.where(kind, ident) if backend is not None and backend.vault is not None else "Vault"
    return f"{kind} `{ident}` is managed in Vault ({where}) and is read-only here; change it there"


def refuse_if_in_vault(ctx: Any, kind: str, ident: str) -> None:
    """A store write to an id Vault holds would be shadowed and silently do nothing: 409 instead."""
    if held(ctx, kind, ident) is not None:
        raise problem.conflict(held_message(ctx, kind, ident))


def held_ids(ctx: Any, kind: str, idents: list[str]) -> set[str]:
    """Which of ``idents`` Vault holds, for a bulk request: one listing, then a read of only the ids
    it names (a listed path whose latest version is deleted is not held). Vault failing is a 503
    for the whole request: writing without knowing could hide a value behind Vault's."""
    backend = backend_for(ctx) if kind in KINDS else None
    if backend is None or backend.vault is None or not idents:
        return set()
    try:
        listed = set(backend.vault.list_ids(kind))
    except SecretsUnavailable as exc:
        raise _unavailable(exc) from exc
    return {ident for ident in set(idents) & listed if held(ctx, kind, ident) is not None}
