"""`leoflow pools list|get|set|delete|import|export`.

Files use Airflow's ``pools export`` format: ``{name: {"slots": n, "description": ...,
"include_deferred": false}}`` (JSON, or YAML by extension).
"""

from __future__ import annotations

import argparse
from typing import Any

from leoflow.cli import _entities, output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.errors import CliError
from leoflow.cli.output import col

BASE = "/api/v2/pools"
DEFAULT_POOL = "default_pool"
COLUMNS = [col("POOL", "name"), col("SLOTS", "slots"), col("OCCUPIED", "occupied_slots"),
           col("RUNNING", "running_slots"), col("QUEUED", "queued_slots"), col("OPEN", "open_slots"),
           col("DESCRIPTION", "description")]


def register(sub: argparse._SubParsersAction) -> None:
    pools = sub.add_parser("pools", help="manage pools (list, get, set, delete, import, export)",
                           epilog=EXIT_CODES_EPILOG)
    pools_sub = pools.add_subparsers(dest="pools_command", metavar="SUBCOMMAND")
    pools.set_defaults(func=lambda _args: pools.print_help() or 2)
    parent = api_parent()

    lst = pools_sub.add_parser("list", parents=[parent], help="all pools with their slot use", epilog=EXIT_CODES_EPILOG)
    lst.set_defaults(func=cmd_list)

    get = pools_sub.add_parser("get", parents=[parent], help="one pool", epilog=EXIT_CODES_EPILOG)
    get.add_argument("name", metavar="POOL")
    get.set_defaults(func=cmd_get)

    put = pools_sub.add_parser("set", parents=[parent], help="create a pool or change its slots/description",
                               epilog=EXIT_CODES_EPILOG)
    put.add_argument("name", metavar="POOL")
    put.add_argument("slots", type=int, metavar="SLOTS", help="number of slots (-1: unlimited)")
    put.add_argument("--description")
    put.add_argument("--include-deferred", action="store_true", help="deferred tasks take a slot too")
    put.set_defaults(func=cmd_set)

    delete = pools_sub.add_parser("delete", parents=[parent], help="delete pools", epilog=EXIT_CODES_EPILOG)
    delete.add_argument("names", nargs="+", metavar="POOL")
    delete.set_defaults(func=cmd_delete)

    imp = pools_sub.add_parser("import", parents=[parent], help="create or update pools from a JSON/YAML file "
                               "(Airflow's format)", epilog=EXIT_CODES_EPILOG)
    imp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdin")
    imp.add_argument("--format", choices=("json", "yaml"))
    imp.set_defaults(func=cmd_import)

    exp = pools_sub.add_parser("export", parents=[parent], help="write all pools to a JSON/YAML file "
                               "(Airflow's format)", epilog=EXIT_CODES_EPILOG)
    exp.add_argument("file", metavar="FILE", help="a .json/.yaml/.yml file, or - for stdout")
    exp.add_argument("--format", choices=("json", "yaml"))
    exp.set_defaults(func=cmd_export)


def cmd_list(args: argparse.Namespace) -> int:
    rows = list(ApiClient.from_args(args).paginate(BASE, "pools", {"order_by": "name"}))
    output.emit(rows, args.output, rows, COLUMNS)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    item = ApiClient.from_args(args).get(f"{BASE}/{seg(args.name)}")
    output.details(item, args.output)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    if args.slots < -1:
        raise CliError("SLOTS must be -1 (unlimited) or more", exit_code=2)
    client = ApiClient.from_args(args)
    path = f"{BASE}/{seg(args.name)}"
    if client.exists(path):
        body: dict[str, Any] = {"slots": args.slots, "include_deferred": args.include_deferred}
        if args.description is not None:
            body["description"] = args.description
        result = client.patch(path, body, params={"update_mask": list(body)})
        verb = "updated"
    else:
        result = client.post(BASE, {"name": args.name, "slots": args.slots, "description": args.description,
                                    "include_deferred": args.include_deferred})
        verb = "created"
    if args.output != "table":
        output.dump(result, args.output)
    else:
        print(f"{verb} pool {args.name} ({args.slots} slots)")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    for name in args.names:
        client.delete(f"{BASE}/{seg(name)}")
        print(f"deleted pool {name}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    data = _entities.read_mapping(args.file, args.format, "pool")
    entities: list[dict[str, Any]] = []
    for name, value in data.items():
        if not isinstance(value, dict) or not isinstance(value.get("slots"), int) or isinstance(value["slots"], bool):
            raise CliError(f"{args.file}: pool {name}: expected {{\"slots\": <int>, \"description\": ...}}")
        unknown = set(value) - {"slots", "description", "include_deferred", "team_name"}
        if unknown:
            raise CliError(f"{args.file}: pool {name}: unknown field(s) {', '.join(sorted(unknown))}")
        entity = {"name": name, **value}
        if name == DEFAULT_POOL:
            entity.pop("description", None)  # the server keeps the default pool's description fixed
        entities.append(entity)
    client = ApiClient.from_args(args)
    done, errors = _entities.bulk_create(client, BASE, entities, "overwrite")
    return _entities.report_import("pool(s)", len(entities), done, errors, [])


def cmd_export(args: argparse.Namespace) -> int:
    rows = list(ApiClient.from_args(args).paginate(BASE, "pools", {"order_by": "name"}))
    data: dict[str, Any] = {}
    for r in rows:
        entry = {"slots": r.get("slots"), "description": r.get("description"),
                 "include_deferred": bool(r.get("include_deferred"))}
        if r.get("team_name") is not None:
            entry["team_name"] = r["team_name"]
        data[r["name"]] = entry
    _entities.write_mapping(args.file, args.format, data)
    if args.file != "-":
        print(f"exported {len(data)} pool(s) to {args.file}")
    return 0
