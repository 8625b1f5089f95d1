"""Airflow's connection URI and environment variable names, so a task's Airflow code reads them natively.

``connection_uri`` follows Airflow 3's ``Connection.get_uri()`` rule by rule: every user-supplied
part is percent-encoded with ``quote(..., safe="")`` (so a password holding ``@ : / ? # & = %``
survives), a host carrying its own ``scheme://`` keeps it, and ``extra`` becomes the query string
when it round-trips through ``urlencode``/``parse_qsl``, else goes whole under ``__extra__``.
Airflow's ``Connection(uri=...)`` parses the result back to the same fields.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from leoflow.domain.records import Connection

EXTRA_KEY = "__extra__"
_ENV_NAME = re.compile(r"[^A-Za-z0-9_]")


def env_name(kind: str, ident: str) -> str:
    """``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<KEY>``: Airflow upper-cases the id; other bytes become ``_``."""
    return f"AIRFLOW_{kind}_" + _ENV_NAME.sub("_", ident.upper())


def _extra_dejson(extra: str) -> Any:
    try:
        return json.loads(extra)
    except (json.JSONDecodeError, ValueError):
        return {}


def connection_uri(conn: Connection) -> str:
    uri = f"{conn.conn_type.lower().replace('_', '-')}://" if conn.conn_type else "//"
    if conn.host and "://" in conn.host:
        protocol, host = conn.host.split("://", 1)
    else:
        protocol, host = None, conn.host
    if protocol:
        uri += f"{protocol}://"
    authority = ""
    if conn.login is not None:
        authority += quote(conn.login, safe="")
    if conn.password is not None:
        authority += ":" + quote(conn.password, safe="")
    if authority:
        authority += "@"
        uri += authority
    host_block = ""
    if host:
        host_block += quote(host, safe="")
    if conn.port:
        host_block += f"@:{conn.port}" if host_block == "" and authority == "" else f":{conn.port}"
    if conn.schema:
        host_block += f"/{quote(conn.schema, safe='')}"
    uri += host_block
    if conn.extra:
        dejson = _extra_dejson(conn.extra)
        try:
            query: str | None = urlencode(dejson)
        except TypeError:
            query = None
        sep = "?" if conn.schema else "/?"
        if query and dejson == dict(parse_qsl(query, keep_blank_values=True)):
            uri += sep + query
        else:
            uri += sep + urlencode({EXTRA_KEY: conn.extra})
    return uri


def connection_from_vault(conn_id: str, value: dict[str, Any]) -> Connection | str:
    """A KV secret in Airflow's VaultBackend shapes: ``{"conn_uri": ...}`` (returned as the URI
    itself, delivered verbatim) or the fields ``conn_type, host, login, password, schema, port, extra``."""
    for key in ("conn_uri", "uri"):
        uri = value.get(key)
        if isinstance(uri, str) and uri:
            return uri
    extra = value.get("extra")
    if isinstance(extra, dict | list):
        extra = json.dumps(extra)
    port = value.get("port")
    try:
        port_num = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise ValueError(f"connection {conn_id!r}: port {port!r} is not a number") from None
    conn_type = value.get("conn_type")
    if not isinstance(conn_type, str) or not conn_type:
        raise ValueError(f"connection {conn_id!r}: the secret has neither conn_uri nor conn_type")

    def text(name: str) -> str | None:
        v = value.get(name)
        return None if v is None else str(v)

    return Connection(connection_id=conn_id, conn_type=conn_type, description=text("description"),
                      host=text("host"), login=text("login"), password=text("password"), schema=text("schema"),
                      port=port_num, extra=None if extra is None else str(extra))
