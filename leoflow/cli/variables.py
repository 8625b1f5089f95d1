"""`leoflow variables list|get|set|delete|import|export`.

Files use Airflow's ``variables export`` format: ``{key: value}``, or ``{key: {"value": ...,
"description": ...}}`` for a variable with a description; JSON values stay JSON. Values of
sensitive keys are ``***`` from the API unless ``--show-secrets`` (adr/0075); ``import`` never
writes a ``***`` value (it would overwrite the real one) and says which keys it skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from leoflow.cli import _entities, output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.errors import CliError
from leoflow.cli.output import col

BASE = "/api/v2/variables"
COLUMNS = [col("KEY", "key"), col("VALUE", "value"), col("DESCRIPTION", "description")]


def register(sub: argparse._SubParsersAction) -> None:
    variables = sub.add_parser("variables", help="manage variables (list, get, set, delete, import, export)",
                               epilog=EXIT_CODES_EPILOG)
    var_sub = variables.add_subparsers(dest="variables_command", metavar="SUBCOMMAND")
    variables.set_defaults(func=lambda _args: variables.print_help() or 2)
    parent = api_parent()

    lst = var_sub.add_parser("list", parents=[parent], help="all variables", epilog=EXIT_CODES_EPILOG)
    lst.add_argument("--show-secrets", action="store_true", help="read from the store and show sensitive values")
    lst.set_defaults(func=cmd_list)

    get = var_sub.add_parser("get", parents=[parent], help="a variable's value (table output: the bare value)",
                             epilog=EXIT_CODES_EPILOG)
    get.add_argument("key", metavar="KEY")
    get.add_argument("--default", help="print this instead of failing when the variable does not exist")
    get.add_argument("--show-secrets", action="store_true", help="read from the store and show a sensitive value")
    get.set_defaults(func=cmd_get)

    put = var_sub.add_parser(
        "set", parents=[parent], help="create or replace a variable",
        description="Set KEY to VALUE, or to stdin with --value-stdin (keeps secrets out of argv and shell "
                    "history). --json checks that the value is JSON.", epilog=EXIT_CODES_EPILOG)
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", nargs="?", metavar="VALUE")
    put.add_argument("--value-stdin", action="store_true", help="read the value from stdin (all of it)")
    put.add_argument("--json", action="store_true", help="the value must be valid JSON")
    put.add_argument("--description")
    put.set_defaults(func=cmd_set)

    delete = var_sub.add_parser("delete", parents=[parent], help="delete variables", epilog=EXIT_CODES_EPILOG)
    delete.add_argument("keys", nargs="+", metavar="KEY")
    delete.set_defaults(func=cmd_delete)

    imp = var_sub.add_parser("import", parents=[parent], help="set variables from a JSON/YAML file (Airflow's "
                             "format)", epilog=EXIT_CODES_EPILOG)
    imp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdin")
    imp.add_argument("--format", choices=("json", "yaml"))
    imp.add_argument("--action-on-existing-key", choices=("overwrite", "skip", "fail"), default="overwrite",
                     help="what to do with keys that exist (default: overwrite, as Airflow)")
    imp.set_defaults(func=cmd_import)

    exp = var_sub.add_parser("export", parents=[parent], help="write all variables to a JSON/YAML file "
                             "(Airflow's format)", epilog=EXIT_CODES_EPILOG)
    exp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdout")
    exp.add_argument("--format", choices=("json", "yaml"))
    exp.add_argument("--show-secrets", action="store_true", help="read from the store and include sensitive values")
    exp.set_defaults(func=cmd_export)


def _record_dict(v: Any) -> dict[str, Any]:
    return {"key": v.key, "value": v.value, "description": v.description, "is_encrypted": False,
            "team_name": v.team_name}


def _all(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.show_secrets:
        with _entities.store_repos() as repos:
            rows = [_record_dict(v.record) for v in repos.variables.all()]
        return sorted(rows, key=lambda r: r["key"])
    return list(ApiClient.from_args(args).paginate(BASE, "variables", {"order_by": "key"}))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _all(args)
    output.emit(rows, args.output, rows, COLUMNS)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    item: dict[str, Any] | None
    if args.show_secrets:
        with _entities.store_repos() as repos:
            found = repos.variables.get(args.key)
            item = _record_dict(found.record) if found is not None else None
    else:
        client = ApiClient.from_args(args)
        resp = client.request("GET", f"{BASE}/{seg(args.key)}", ok=(404,))
        item = None if resp.status_code == 404 else client._json(resp)
    if item is None:
        if args.default is not None:
            print(args.default)
            return 0
        raise CliError(f"variable {args.key!r} does not exist")
    if args.output == "table":
        print(item.get("value"))
    else:
        output.dump(item, args.output)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    if args.value_stdin == (args.value is not None):
        raise CliError("give VALUE or --value-stdin (one of them)", exit_code=2)
    value = sys.stdin.read() if args.value_stdin else args.value
    if args.value_stdin and value.endswith("\n"):
        value = value[:-1]
    if args.json:
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise CliError(f"--json: the value is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                           f"{exc.colno})", exit_code=2) from None
    body: dict[str, Any] = {"key": args.key, "value": value}
    if args.description is not None:
        body["description"] = args.description
    client = ApiClient.from_args(args)
    path = f"{BASE}/{seg(args.key)}"
    if client.exists(path):
        result = client.patch(path, body, params={"update_mask": [k for k in body if k != "key"]})
        verb = "updated"
    else:
        result = client.post(BASE, body)
        verb = "created"
    if args.output != "table":
        output.dump(result, args.output)
    else:
        print(f"{verb} variable {args.key}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    for key in args.keys:
        client.delete(f"{BASE}/{seg(key)}")
        print(f"deleted variable {key}")
    return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def cmd_import(args: argparse.Namespace) -> int:
    data = _entities.read_mapping(args.file, args.format, "variable")
    entities: list[dict[str, Any]] = []
    masked: list[str] = []
    for key, raw in data.items():
        value, description = raw, None
        if isinstance(raw, dict) and "value" in raw:
            value, description = raw["value"], raw.get("description")
        if value == _entities.MASK:
            masked.append(key)
            continue
        entity = {"key": key, "value": _text(value)}
        if description is not None:
            entity["description"] = description
        entities.append(entity)
    if masked:
        output.note(f"skipped {len(masked)} masked value(s) (***): {', '.join(masked)}; export with --show-secrets "
                    "for a copy that holds them")
    client = ApiClient.from_args(args)
    done, errors = _entities.bulk_create(client, BASE, entities, args.action_on_existing_key)
    skipped = masked + ([e["key"] for e in entities if e["key"] not in done] if not errors else [])
    return _entities.report_import("variable(s)", len(data), done, errors, skipped)


def cmd_export(args: argparse.Namespace) -> int:
    rows = _all(args)
    data: dict[str, Any] = {}
    for r in rows:
        text = r.get("value")
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            value = text
        if isinstance(value, str):
            value = text
        if r.get("description") or (isinstance(value, dict) and "value" in value):
            data[r["key"]] = {"value": value, "description": r.get("description")}
        else:
            data[r["key"]] = value
    _entities.write_mapping(args.file, args.format, data, private=args.show_secrets)
    if args.file != "-":
        print(f"exported {len(data)} variable(s) to {args.file}")
    if not args.show_secrets and any(r.get("value") == _entities.MASK for r in rows):
        output.note("note: sensitive values are exported as *** (the API never returns them); import skips them. "
                    "Use --show-secrets where the store is reachable for a full copy.")
    return 0
