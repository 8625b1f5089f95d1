"""``GET /ui/connections/hook_meta``: the connection types Leoflow supports, for the connection form.

Airflow builds this list from the installed provider packages' hooks. Leoflow runs no hooks in the
server: a task receives each connection it declares as an ``AIRFLOW_CONN_<ID>`` URI, which every
Airflow-style client library understands. So any ``conn_type`` can be stored, and this registry is
the curated set the form offers, with the field labels and hidden fields of the matching Airflow
provider, so users see the form they know. Extra fields use Airflow's serialized Param shape
(``{value, schema, description, source}``) because the form renders them with its Param widgets.

Operators add or replace types with ``[ui] connection_types_file`` (connection_types_file.py,
adr/0067). A stored connection whose type no registry knows still gets a generic entry: the UI's
form shows no standard field at all for a type missing from this list (adr/0067).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

import falcon

from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.ui import connection_types_file
from leoflow.api.ui.connection_types_file import STANDARD, ConnType
from leoflow.config import Config

__all__ = ["STANDARD", "TYPES", "ConnType", "hook_meta", "preload", "registry"]


def _param(kind: str, title: str, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"], "title": title}
    if kind == "password":
        schema = {"type": ["string", "null"], "title": title, "format": "password"}
    if description:
        schema["description"] = description
    return {"value": None, "schema": schema, "description": description or None, "source": None}


TYPES: tuple[ConnType, ...] = (
    ConnType("generic", "Generic"),
    ConnType("http", "HTTP", titles={"url_schema": "Schema"}, placeholders={"host": "api.example.com",
                                                                            "url_schema": "https"},
             extras={"headers": ("string", "Headers", "JSON object of HTTP headers sent with every request")},
             default_conn_name="http_default"),
    ConnType("postgres", "Postgres", titles={"url_schema": "Database"}, placeholders={"port": "5432"},
             extras={"sslmode": ("string", "SSL mode", "disable, require, verify-ca or verify-full")},
             default_conn_name="postgres_default"),
    ConnType("mysql", "MySQL", titles={"url_schema": "Database"}, placeholders={"port": "3306"},
             default_conn_name="mysql_default"),
    ConnType("sqlite", "SQLite", hidden=("login", "password", "port", "url_schema"),
             titles={"host": "Database file path"}, placeholders={"host": "/data/app.db"}),
    ConnType("redis", "Redis", hidden=("url_schema", "login"), placeholders={"port": "6379"},
             extras={"db": ("integer", "DB", "Redis database number")}, default_conn_name="redis_default"),
    ConnType("ssh", "SSH", hidden=("url_schema",), titles={"login": "Username"}, placeholders={"port": "22"},
             extras={"key_file": ("string", "Private key file", "Path of the key on the agent host"),
                     "private_key": ("password", "Private key", "PEM text of the private key")},
             default_conn_name="ssh_default"),
    ConnType("sftp", "SFTP", hidden=("url_schema",), titles={"login": "Username"}, placeholders={"port": "22"},
             default_conn_name="sftp_default"),
    ConnType("ftp", "FTP", hidden=("url_schema",), placeholders={"port": "21"}, default_conn_name="ftp_default"),
    ConnType("smtp", "SMTP", hidden=("url_schema",), placeholders={"port": "587"},
             extras={"from_email": ("string", "From email", "Sender address"),
                     "disable_tls": ("boolean", "Disable TLS", "")},
             default_conn_name="smtp_default"),
    ConnType("aws", "Amazon Web Services", hidden=("host", "port", "url_schema"),
             titles={"login": "AWS Access Key ID", "password": "AWS Secret Access Key"},
             extras={"region_name": ("string", "Region", "e.g. eu-west-1"),
                     "endpoint_url": ("string", "Endpoint URL", "For S3-compatible stores such as MinIO")},
             default_conn_name="aws_default"),
    ConnType("docker", "Docker registry", hidden=("url_schema", "port"), titles={"host": "Registry URL"},
             placeholders={"host": "registry.example.com"}, default_conn_name="docker_default"),
    ConnType("vault", "HashiCorp Vault", hidden=("login", "url_schema"),
             titles={"password": "Token"}, placeholders={"host": "vault.service.consul", "port": "8200"},
             extras={"namespace": ("string", "Namespace", "Vault Enterprise namespace")}),
    ConnType("fs", "File (path)", hidden=("host", "port", "login", "password", "url_schema"),
             extras={"path": ("string", "Path", "Base directory on the agent host")}, default_conn_name="fs_default"),
)


def _standard_fields(t: ConnType) -> dict[str, Any] | None:
    if not (t.hidden or t.titles or t.placeholders):
        return None
    out: dict[str, Any] = {}
    for name in STANDARD:
        if name in t.hidden or name in t.titles or name in t.placeholders:
            out[name] = {"hidden": name in t.hidden, "title": t.titles.get(name),
                         "placeholder": t.placeholders.get(name)}
        else:
            out[name] = None
    return out


def registry(config: Config) -> tuple[ConnType, ...]:
    """The built-in types overlaid by the operator's file; raises ConnectionTypesError for a bad file."""
    path = config.ui.connection_types_file
    if not path:
        return TYPES
    return connection_types_file.merge(TYPES, connection_types_file.load(path))


# What the gunicorn master validated, by file path. Workers are forked from the master, so they
# inherit it and never re-read the file: a file broken after the last good (re)load cannot reach a
# worker that gunicorn restarts, and a SIGHUP with a bad file keeps every worker on the old types.
_validated: dict[str, tuple[ConnType, ...]] = {}


def preload(config: Config) -> tuple[ConnType, ...]:
    """Validate the configured file now (server start, SIGHUP) and keep it for the workers."""
    types = registry(config)
    if config.ui.connection_types_file:
        _validated[config.ui.connection_types_file] = types
    return types


def _entry(t: ConnType) -> dict[str, Any]:
    return {
        "connection_type": t.conn_type,
        "hook_class_name": None,  # no hook class runs in Leoflow's server
        "default_conn_name": t.default_conn_name,
        "hook_name": t.name,
        "standard_fields": _standard_fields(t),
        "extra_fields": {k: _param(*v) for k, v in t.extras.items()} or None,
    }


def hook_meta(types: tuple[ConnType, ...] = TYPES, stored: AbstractSet[str] = frozenset()) -> list[dict[str, Any]]:
    """Every registered type, then a generic entry (named after it) for each stored unknown type."""
    known = {t.conn_type for t in types}
    unknown = sorted(c for c in stored if c and c not in known)
    return [_entry(t) for t in types] + [_entry(ConnType(c, c)) for c in unknown]


class HookMetaResource:
    # Airflow guards this with connection read access (OP in the simple auth manager).
    roles = {"GET": Role.OP}

    def __init__(self, ctx: AppContext, types: tuple[ConnType, ...]) -> None:
        self._ctx = ctx
        self._known = frozenset(t.conn_type for t in types)
        self._body = hook_meta(types)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # One prefix read per form opening; the registry part is built once.
        stored = {v.record.conn_type for v in self._ctx.repos.connections.all()}
        extra = stored - self._known
        resp.media = self._body + hook_meta((), extra) if extra else self._body


def register(app: falcon.App, ctx: AppContext) -> None:
    path = ctx.config.ui.connection_types_file
    types = _validated.get(path) if path else None
    app.add_route("/ui/connections/hook_meta", HookMetaResource(ctx, types or registry(ctx.config)))
