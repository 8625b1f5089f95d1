"""Connections: CRUD, bulk and test; passwords and sensitive ``extra`` keys are never returned.

Connections hold secrets, so every method needs the ``op`` role (Airflow: even reads). A
password always comes back as ``***``; ``extra`` keys whose names Airflow's masker deems
sensitive come back as ``***``. Sending ``***`` back in a PATCH keeps the stored value
(Airflow's ``merge``), so editing a connection in the UI does not wipe its password.

``POST /connections/test`` is honest about what it can check: it opens a TCP connection to the
connection's host and port (or the usual port of its type) and reports whether that worked. It
does not log in; the message says so.
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
from leoflow.api.public import _bodies, _entities, _query, _runs, _secrets
from leoflow.domain.records import Connection
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.errors import AlreadyExists

FIELDS = ("conn_type", "description", "host", "login", "schema", "port", "password", "extra", "team_name")
TEST_TIMEOUT_SECONDS = 3.0
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


def _not_found(connection_id: str) -> problem.Problem:
    return problem.not_found(f"The Connection with connection_id: `{connection_id}` was not found")


class ConnectionCollection:
    roles = {"GET": Role.OP, "POST": Role.OP, "PATCH": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        preds = _query.patterns(req, "connection_id", lambda v: v.record.connection_id)
        resp.media = _query.listing(req, self.ctx.repos.connections.all(), preds, SORTING, "connections",
                                    lambda v: response(v.record))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.ConnectionBody)
        try:
            created = self.ctx.repos.connections.create(_create(body))
        except AlreadyExists:
            raise problem.conflict(f"Connection with connection_id: `{body.connection_id}` already exists") from None
        _runs.audit(self.ctx, req, "post_connection", extra={"connection_id": body.connection_id})
        resp.status = falcon.HTTP_201
        resp.media = response(created.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.BulkConnections)

        def audit(action: str, ident: str) -> None:
            _runs.audit(self.ctx, req, f"bulk_connections.{action}", extra={"connection_id": ident})

        resp.media = _entities.bulk(self.ctx, ADAPTER, body, audit)


class ConnectionItem:
    roles = {"GET": Role.OP, "PATCH": Role.OP, "DELETE": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, connection_id: str) -> None:
        found = self.ctx.repos.connections.get(connection_id)
        if found is None:
            raise _not_found(connection_id)
        resp.media = response(found.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, connection_id: str) -> None:
        body = _bodies.parse(req, _bodies.ConnectionBody)
        if body.connection_id != connection_id:
            raise problem.bad_request("The connection_id in the request body does not match the URL parameter",
                                      field="body.connection_id")
        mask = dto.update_mask(req, set(FIELDS))
        fields = mask if mask is not None else set(body.model_fields_set) - {"connection_id"}
        fields = {"schema" if f == "schema_" else f for f in fields}
        updated = _entities.write_update(self.ctx, ADAPTER, connection_id, body, fields)
        _runs.audit(self.ctx, req, "patch_connection", extra={"connection_id": connection_id,
                                                              "fields": sorted(fields)})
        resp.media = response(updated.record)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, connection_id: str) -> None:
        if not self.ctx.repos.connections.delete(connection_id):
            raise _not_found(connection_id)
        _runs.audit(self.ctx, req, "delete_connection", extra={"connection_id": connection_id})
        resp.status = falcon.HTTP_204


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


class ConnectionTest:
    roles = {"POST": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.ConnectionBody)
        _check_extra(body.extra)
        ok, message = tcp_check(body.host, body.port, body.conn_type)
        resp.media = {"status": ok, "message": message}


def register(app: falcon.App, ctx: Any) -> None:
    app.add_route("/api/v2/connections", ConnectionCollection(ctx))
    app.add_route("/api/v2/connections/test", ConnectionTest(ctx))
    app.add_route("/api/v2/connections/{connection_id}", ConnectionItem(ctx))
