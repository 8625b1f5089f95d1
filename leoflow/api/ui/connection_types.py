"""``GET /ui/connections/hook_meta``: the connection types Leoflow supports, for the connection form.

Airflow builds this list from the installed provider packages' hooks. Leoflow runs no hooks in the
server: a task receives each connection it declares as an ``AIRFLOW_CONN_<ID>`` URI, which every
Airflow-style client library understands. So any ``conn_type`` can be stored, and this registry is
the curated set the form offers, with the field labels and hidden fields of the matching Airflow
provider, so users see the form they know. Extra fields use Airflow's serialized Param shape
(``{value, schema, description, source}``) because the form renders them with its Param widgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import falcon

from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext

STANDARD = ("description", "url_schema", "host", "port", "login", "password")


@dataclass(frozen=True)
class ConnType:
    conn_type: str
    name: str
    hidden: tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)
    placeholders: Mapping[str, str] = field(default_factory=dict)
    extras: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (type, title, help)
    default_conn_name: str | None = None


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


def hook_meta() -> list[dict[str, Any]]:
    return [
        {
            "connection_type": t.conn_type,
            "hook_class_name": None,  # no hook class runs in Leoflow's server
            "default_conn_name": t.default_conn_name,
            "hook_name": t.name,
            "standard_fields": _standard_fields(t),
            "extra_fields": {k: _param(*v) for k, v in t.extras.items()} or None,
        }
        for t in TYPES
    ]


class HookMetaResource:
    # Airflow guards this with connection read access (OP in the simple auth manager).
    roles = {"GET": Role.OP}

    def __init__(self) -> None:
        self._body = hook_meta()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._body


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/connections/hook_meta", HookMetaResource())
