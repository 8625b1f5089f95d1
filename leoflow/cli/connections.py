"""`leoflow connections list|get|set|delete|import|export`.

Files use Airflow's ``connections export`` format: ``{conn_id: {conn_type, description, host,
login, password, schema, port, extra}}`` as JSON or YAML; ``import`` also takes a connection URI
string as the value (``postgres://user:pass@host:5432/db?k=v``), as Airflow does. Passwords are
``***`` unless ``--show-secrets`` (adr/0075); a ``***`` password in an imported file keeps the
stored password of an existing connection and is left out for a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from leoflow.cli import _entities, output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.errors import CliError
from leoflow.cli.output import col

BASE = "/api/v2/connections"
FIELDS = ("conn_type", "description", "host", "login", "password", "schema", "port", "extra")
COLUMNS = [col("CONN_ID", "connection_id"), col("TYPE", "conn_type"), col("HOST", "host"), col("PORT", "port"),
           col("LOGIN", "login"), col("SCHEMA", "schema"), col("DESCRIPTION", "description")]
SECRET_COLUMNS = [*COLUMNS[:5], col("PASSWORD", "password"), *COLUMNS[5:], col("EXTRA", "extra")]


def register(sub: argparse._SubParsersAction) -> None:
    conns = sub.add_parser("connections", help="manage connections (list, get, set, delete, import, export)",
                           epilog=EXIT_CODES_EPILOG)
    conns_sub = conns.add_subparsers(dest="connections_command", metavar="SUBCOMMAND")
    conns.set_defaults(func=lambda _args: conns.print_help() or 2)
    parent = api_parent()

    lst = conns_sub.add_parser("list", parents=[parent], help="all connections", epilog=EXIT_CODES_EPILOG)
    lst.add_argument("--show-secrets", action="store_true", help="read from the store and show passwords")
    lst.set_defaults(func=cmd_list)

    get = conns_sub.add_parser("get", parents=[parent], help="one connection", epilog=EXIT_CODES_EPILOG)
    get.add_argument("conn_id", metavar="CONN_ID")
    get.add_argument("--show-secrets", action="store_true", help="read from the store and show the password")
    get.set_defaults(func=cmd_get)

    put = conns_sub.add_parser(
        "set", parents=[parent], help="create a connection or change the given fields of one",
        description="Create CONN_ID (--conn-type required) or update only the fields given. The password is "
                    "never taken from argv: --password-stdin reads it from stdin.", epilog=EXIT_CODES_EPILOG)
    put.add_argument("conn_id", metavar="CONN_ID")
    put.add_argument("--conn-type", help="e.g. postgres, http, aws")
    put.add_argument("--host")
    put.add_argument("--port", type=int)
    put.add_argument("--login")
    put.add_argument("--schema")
    put.add_argument("--extra", metavar="JSON", help="a JSON object")
    put.add_argument("--description")
    put.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    put.set_defaults(func=cmd_set)

    delete = conns_sub.add_parser("delete", parents=[parent], help="delete connections", epilog=EXIT_CODES_EPILOG)
    delete.add_argument("conn_ids", nargs="+", metavar="CONN_ID")
    delete.set_defaults(func=cmd_delete)

    imp = conns_sub.add_parser("import", parents=[parent], help="create connections from a JSON/YAML file "
                               "(Airflow's format)", epilog=EXIT_CODES_EPILOG)
    imp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdin")
    imp.add_argument("--format", choices=("json", "yaml"), help="file format (default: from the extension)")
    imp.add_argument("--overwrite", action="store_true", help="replace existing connections (default: skip them)")
    imp.set_defaults(func=cmd_import)

    exp = conns_sub.add_parser("export", parents=[parent], help="write all connections to a JSON/YAML file "
                               "(Airflow's format)", epilog=EXIT_CODES_EPILOG)
    exp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdout")
    exp.add_argument("--format", choices=("json", "yaml"), help="file format (default: from the extension)")
    exp.add_argument("--show-secrets", action="store_true", help="read from the store and include passwords")
    exp.set_defaults(func=cmd_export)


def _record_dict(c: Any) -> dict[str, Any]:
    return {"connection_id": c.connection_id, **{f: getattr(c, f) for f in FIELDS}, "team_name": c.team_name}


def _all(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.show_secrets:
        with _entities.store_repos() as repos:
            rows = [_record_dict(v.record) for v in repos.connections.all()]
        return sorted(rows, key=lambda r: r["connection_id"])
    client = ApiClient.from_args(args)
    return list(client.paginate(BASE, "connections", {"order_by": "connection_id"}))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _all(args)
    output.emit(rows, args.output, rows, SECRET_COLUMNS if args.show_secrets else COLUMNS)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.show_secrets:
        with _entities.store_repos() as repos:
            found = repos.connections.get(args.conn_id)
            if found is None:
                raise CliError(f"The Connection with connection_id: `{args.conn_id}` was not found")
            item = _record_dict(found.record)
    else:
        item = ApiClient.from_args(args).get(f"{BASE}/{seg(args.conn_id)}")
    output.details(item, args.output, ["connection_id", *FIELDS, "team_name"])
    return 0


def _extra(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--extra is not valid JSON: {exc.msg} (column {exc.colno})", exit_code=2) from None
    if not isinstance(value, dict):
        raise CliError("--extra must be a JSON object", exit_code=2)
    return json.dumps(value)


def cmd_set(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"connection_id": args.conn_id}
    for name in ("conn_type", "host", "port", "login", "schema", "description"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    extra = _extra(args.extra)
    if extra is not None:
        body["extra"] = extra
    if args.password_stdin:
        body["password"] = sys.stdin.readline().rstrip("\r\n")
    client = ApiClient.from_args(args)
    path = f"{BASE}/{seg(args.conn_id)}"
    if client.exists(path):
        mask = [k for k in body if k != "connection_id"]
        if not mask:
            raise CliError("nothing to change: give at least one field (e.g. --host)", exit_code=2)
        current = client.get(path)
        body.setdefault("conn_type", current["conn_type"])
        result = client.patch(path, body, params={"update_mask": mask})
        verb = "updated"
    else:
        if not args.conn_type:
            raise CliError(f"connection {args.conn_id!r} does not exist yet: --conn-type is required to create it",
                           exit_code=2)
        result = client.post(BASE, body)
        verb = "created"
    if args.output != "table":
        output.dump(result, args.output)
    else:
        print(f"{verb} connection {args.conn_id}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    for conn_id in args.conn_ids:
        client.delete(f"{BASE}/{seg(conn_id)}")
        print(f"deleted connection {conn_id}")
    return 0


def from_uri(conn_id: str, uri: str) -> dict[str, Any]:
    """Airflow's connection URI: ``type://login:password@host:port/schema?extra=...``."""
    parts = urlsplit(uri)
    if not parts.scheme:
        raise CliError(f"connection {conn_id}: {uri!r} is not a connection URI (no scheme)")
    conn_type = parts.scheme.replace("-", "_")
    extra_pairs = parse_qsl(parts.query, keep_blank_values=True)
    extra: dict[str, Any] = {}
    if len(extra_pairs) == 1 and extra_pairs[0][0] == "__extra__":
        extra = json.loads(extra_pairs[0][1])
    else:
        extra = dict(extra_pairs)
    try:
        port = parts.port
    except ValueError as exc:
        raise CliError(f"connection {conn_id}: {exc}") from None
    return {"conn_type": conn_type, "host": unquote(parts.hostname or "") or None,
            "login": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "schema": unquote(parts.path.lstrip("/")) or None, "port": port,
            "extra": json.dumps(extra) if extra else None}


def _entity(conn_id: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = from_uri(conn_id, value)
    if not isinstance(value, dict):
        raise CliError(f"connection {conn_id}: expected a mapping of fields or a URI string")
    if "uri" in value or "conn_uri" in value:
        value = {**from_uri(conn_id, str(value.get("uri") or value.get("conn_uri"))),
                 **{k: v for k, v in value.items() if k not in ("uri", "conn_uri")}}
    unknown = set(value) - {*FIELDS, "team_name", "conn_id", "connection_id"}
    if unknown:
        raise CliError(f"connection {conn_id}: unknown field(s) {', '.join(sorted(unknown))}")
    if not value.get("conn_type"):
        raise CliError(f"connection {conn_id}: conn_type is required")
    entity: dict[str, Any] = {"connection_id": conn_id}
    for name in (*FIELDS, "team_name"):
        if name not in value:
            continue
        v = value[name]
        if name == "extra" and isinstance(v, dict):
            v = json.dumps(v)
        elif name == "port" and isinstance(v, str) and v.isdigit():
            v = int(v)
        if name == "password" and v == _entities.MASK:
            continue  # masked in an export without secrets: keep what the server has
        entity[name] = v
    return entity


def cmd_import(args: argparse.Namespace) -> int:
    data = _entities.read_mapping(args.file, args.format, "connection")
    entities = [_entity(conn_id, value) for conn_id, value in data.items()]
    client = ApiClient.from_args(args)
    done, errors = _entities.bulk_create(client, BASE, entities, "overwrite" if args.overwrite else "skip")
    skipped = [e["connection_id"] for e in entities if e["connection_id"] not in done] if not errors else []
    return _entities.report_import("connection(s)", len(entities), done, errors, skipped)


def cmd_export(args: argparse.Namespace) -> int:
    rows = _all(args)
    data = {r["connection_id"]: {f: r.get(f) for f in FIELDS} for r in rows}
    _entities.write_mapping(args.file, args.format, data, private=args.show_secrets)
    if args.file != "-":
        print(f"exported {len(data)} connection(s) to {args.file}")
    if not args.show_secrets and any(r.get("password") for r in rows):
        output.note("note: passwords are exported as *** (the API never returns them); importing *** keeps a "
                    "connection's stored password. Use --show-secrets where the store is reachable for a full copy.")
    return 0
