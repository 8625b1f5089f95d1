"""Connections: CRUD, bulk and test; passwords and sensitive ``extra`` keys are never returned.

Connections hold secrets, so every method needs the ``op`` role (Airflow: even reads). A
password always comes back as ``***``; ``extra`` keys whose names Airflow's masker deems
sensitive come back as ``***``. Sending ``***`` back in a PATCH keeps the stored value
(Airflow's ``merge``), so editing a connection in the UI does not wipe its password.

``POST /connections/test`` is off unless ``[ui] test_connection = "Enabled"`` (Airflow's
``[core] test_connection``, default ``Disabled``): it opens a TCP connection to any host and port
the caller names and says whether that worked, so left on it would let every ``op`` user probe
the internal network from the server. When enabled it is honest about what it checks: reachability
of the host and port (or the usual port of the type), no login; the message says so. ``/ui/config``
echoes the same setting, so the UI shows the Test button exactly when the endpoint answers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies, _entities, _query, _secrets
from leoflow.domain.records import Connection
from leoflow.store.repos.base import Versioned

FIELDS = ("conn_type", "description", "host", "login", "schema", "port", "password", "extra", "team_name")
TEST_TIMEOUT_SECONDS = 3.0
TEST_DISABLED = ("Testing connections is disabled in Airflow configuration. "
                 "Contact your deployment admin to enable it.")
DEFAULT_PORTS = {
    "postgres": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521, "redis": 6379, "mongo": 27017,
    "http": 80, "https": 443, "ssh": 22, "sftp": 22, "ftp": 21, "smtp": 25, "imap": 143,
    "elasticsearch": 9200, "cassandra": 9042, "trino": 8080, "presto": 8080, "vertica": 5433,
    "snowflake": 443, "kafka": 9092, "amqp": 5672, "rabbitmq": 5672, "ldap": 389,
}


def response(c: Connection) -> dict[str, Any]:
    return {
        "connection_id": c.connection_id,
        "conn_type": c.conn_type,
        "description": c.description,
        "host": c.host,
        "login": c.login,
        "schema": c.schema,
        "port": c.port,
        "password": _secrets.connection_password(c.password),
        "extra": _secrets.connection_extra(c.extra),
        "team_name": c.team_name,
    }


def _check_extra(extra: str | None) -> None:
    if extra is None or extra == "":
        return
    try:
        parsed = json.loads(extra)
    except json.JSONDecodeError:
        raise problem.invalid("body.extra", "The `extra` field must be a valid JSON object (e.g., {'key': 'value'}), "
                              "but encountered non-JSON in `extra` field") from None
    if not isinstance(parsed, dict):
        raise problem.invalid("body.extra", "The `extra` field must be a valid JSON object (e.g., {'key': 'value'})")


def _create(body: Any) -> Connection:
    _check_extra(body.extra)
    return Connection(
        connection_id=body.connection_id, conn_type=body.conn_type, description=body.description,
        host=body.host, login=body.login, password=body.password, schema=body.schema_, port=body.port,
        extra=body.extra, team_name=body.team_name,
    )


def _value(body: Any, name: str) -> Any:
    return body.schema_ if name == "schema" else getattr(body, name)


def _update(stored: Connection, body: Any, fields: set[str]) -> Connection:
    changes: dict[str, Any] = {}
    for name in fields & set(FIELDS):
        value = _value(body, name)
        if name == "password":
            value = _secrets.merge(value, stored.password, "password")
        elif name == "extra" and value:
            _check_extra(value)
            if stored.extra:
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.dumps(_secrets.merge(json.loads(value), json.loads(stored.extra)))
        changes[name] = value
    return dataclasses.replace(stored, **changes)


ADAPTER: _entities.Adapter[Connection] = _entities.Adapter(
    noun="connection",
    id_name="connection_id",
    repo=lambda ctx: ctx.repos.connections,
    id_of_body=lambda b: b.connection_id,
    create=_create,
    update=_update,
    updatable=frozenset(FIELDS),
)

SORTING: _query.Sorting[Versioned[Connection]] = _query.Sorting(
    keys={
        "connection_id": lambda v: v.record.connection_id,
        "conn_type": lambda v: v.record.conn_type,
        "description": lambda v: v.record.description,
        "host": lambda v: v.record.host,
        "port": lambda v: v.record.port,
        "id": lambda v: v.create_index,
    },
    default="id",
    primary_key="id",
    aliases={"conn_id": "connection_id"},
)


def _patch_fields(req: falcon.Request, body: Any) -> set[str]:
    """Airflow's ``update_orm_from_pydantic``: the masked fields as sent or defaulted, else those sent."""
    mask = dto.update_mask(req, set(FIELDS))
    fields = mask if mask is not None else set(body.model_fields_set)
    return {"schema" if f == "schema_" else f for f in fields}


RESOURCE: _entities.Resource[Connection] = _entities.Resource(
    adapter=ADAPTER,
    title="Connection",
    path_param="connection_id",
    body=_bodies.ConnectionBody,
    bulk_body=_bodies.BulkConnections,
    sorting=SORTING,
    response=response,
    exists_detail="Connection with connection_id: `{ident}` already exists",
    mismatch_detail="The connection_id in the request body does not match the URL parameter",
    patch_fields=_patch_fields,
)


def tcp_check(
    host: str | None, port: int | None, conn_type: str, timeout: float = TEST_TIMEOUT_SECONDS
) -> tuple[bool, str]:
    """Reachability of ``host:port``; the message says exactly what was and was not checked."""
    if not host:
        return False, (f"Leoflow can only test that a connection's host is reachable; connection type "
                       f"{conn_type!r} without a host cannot be tested")
    target_port = port or DEFAULT_PORTS.get(conn_type.lower())
    if target_port is None:
        return False, (f"no port given and no usual port known for connection type {conn_type!r}; "
                       "set the port to test reachability")
    try:
        with socket.create_connection((host, target_port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"could not open a TCP connection to {host}:{target_port}: {exc.strerror or exc}"
    return True, (f"TCP connection to {host}:{target_port} succeeded (reachability only: Leoflow does not "
                  "log in with the credentials)")


def connection_test_mode(setting: str) -> str:
    """The setting as the UI compares it ("Enabled" | "Hidden" | "Disabled").

    Airflow's gate accepts "enabled" in any case and spacing, while its UI compares the exact
    strings; normalizing once keeps the button and the endpoint in agreement.
    """
    lowered = setting.strip().lower()
    return "Enabled" if lowered == "enabled" else "Hidden" if lowered == "hidden" else "Disabled"


class ConnectionTest:
    roles = {"POST": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if connection_test_mode(self.ctx.config.ui.test_connection) != "Enabled":
            raise problem.forbidden(TEST_DISABLED)
        body = _bodies.parse(req, _bodies.ConnectionBody)
        _check_extra(body.extra)
        ok, message = tcp_check(body.host, body.port, body.conn_type)
        resp.media = {"status": ok, "message": message}


def register(app: falcon.App, ctx: Any) -> None:
    _entities.register(app, ctx, RESOURCE)
    app.add_route("/api/v2/connections/test", ConnectionTest(ctx))
