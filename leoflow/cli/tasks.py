"""`leoflow tasks list|logs|clear|mark`: tasks and task instances on a running server.

``logs -f`` follows a running try through the logs endpoint's ``continuation_token`` (opaque: passed
back verbatim; ``null`` once the try is over and every line was read). While a try has no log yet
the server answers one "no logs yet" line (logger ``leoflow.logs``) on every poll; it is shown once
per distinct text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from leoflow.cli import output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.dags_api import TASK_COLUMNS, TI_COLUMNS, dag_path
from leoflow.cli.errors import CliError
from leoflow.cli.progress import task_instances
from leoflow.cli.runs import run_path

LEVEL_COLOURS = {"error": "31", "critical": "31", "warning": "33", "debug": "90"}
# The logger of the server's "no logs yet" line (leoflow/api/logs.py NO_LOGS_LOGGER).
NO_LOGS_LOGGER = "leoflow.logs"


def ti_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    base = f"{run_path(dag_id, run_id)}/taskInstances/{seg(task_id)}"
    return base if map_index == -1 else f"{base}/{map_index}"


def register(sub: argparse._SubParsersAction) -> None:
    tasks = sub.add_parser("tasks", help="tasks of a DAG and task instances of a run: list, logs, clear, mark",
                           epilog=EXIT_CODES_EPILOG)
    tasks_sub = tasks.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND")
    tasks.set_defaults(func=lambda _args: tasks.print_help() or 2)
    parent = api_parent()

    lst = tasks_sub.add_parser("list", parents=[parent], help="a DAG's tasks, or with RUN_ID that run's task instances",
                               epilog=EXIT_CODES_EPILOG)
    lst.add_argument("dag_id", metavar="DAG_ID")
    lst.add_argument("run_id", nargs="?", metavar="RUN_ID")
    lst.set_defaults(func=cmd_list)

    logs = tasks_sub.add_parser(
        "logs", parents=[parent], help="a task try's log; -f follows it while it runs",
        description="Print the log of one try of a task instance (default: its latest try). With -f, keep "
                    "printing new lines until the try ends. -o json prints one JSON object per line.",
        epilog=EXIT_CODES_EPILOG)
    logs.add_argument("dag_id", metavar="DAG_ID")
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument("task_id", metavar="TASK_ID")
    logs.add_argument("--try", dest="try_number", type=int, metavar="N", help="try number (default: the latest)")
    logs.add_argument("--map-index", type=int, default=-1, metavar="I", help="mapped task index (default -1)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following until the try ends")
    logs.add_argument("--poll-interval", type=float, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS)
    logs.set_defaults(func=cmd_logs)

    clear = tasks_sub.add_parser("clear", parents=[parent], help="clear task instances so they run again",
                                 epilog=EXIT_CODES_EPILOG)
    clear.add_argument("dag_id", metavar="DAG_ID")
    clear.add_argument("run_id", metavar="RUN_ID")
    clear.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    clear.add_argument("--downstream", action="store_true", help="also clear tasks downstream")
    clear.add_argument("--upstream", action="store_true", help="also clear tasks upstream")
    clear.add_argument("--only-failed", action="store_true", help="only failed task instances")
    clear.add_argument("--dry-run", action="store_true", help="list what would be cleared; change nothing")
    clear.set_defaults(func=cmd_clear)

    mark = tasks_sub.add_parser("mark", parents=[parent], help="set a task instance's state (success, failed, skipped)",
                                epilog=EXIT_CODES_EPILOG)
    mark.add_argument("dag_id", metavar="DAG_ID")
    mark.add_argument("run_id", metavar="RUN_ID")
    mark.add_argument("task_id", metavar="TASK_ID")
    mark.add_argument("state", choices=("success", "failed", "skipped"), metavar="STATE",
                      help="success | failed | skipped")
    mark.add_argument("--map-index", type=int, default=-1, metavar="I")
    mark.add_argument("--downstream", action="store_true", help="also mark tasks downstream")
    mark.add_argument("--upstream", action="store_true", help="also mark tasks upstream")
    mark.add_argument("--note", help="a note to record")
    mark.set_defaults(func=cmd_mark)


def cmd_list(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    if args.run_id is None:
        tasks = client.get(dag_path(args.dag_id) + "/tasks").get("tasks", [])
        output.emit(tasks, args.output, tasks, TASK_COLUMNS)
    else:
        tis = task_instances(client, args.dag_id, args.run_id)
        output.emit(tis, args.output, tis, TI_COLUMNS)
    return 0


def _format_line(line: dict[str, Any]) -> str:
    level = str(line.get("level") or "info").lower()
    stamp = str(line.get("timestamp") or "")
    text = f"{stamp} {level.upper():<7} {line.get('event', '')}" if stamp else str(line.get("event", ""))
    return output.paint(text, LEVEL_COLOURS.get(level))


def cmd_logs(args: argparse.Namespace) -> int:
    if args.output == "yaml" and args.follow:
        raise CliError("-f prints as it goes: use -o table or -o json (one object per line)", exit_code=2)
    client = ApiClient.from_args(args)
    ti = client.get(ti_path(args.dag_id, args.run_id, args.task_id, args.map_index))
    number = args.try_number if args.try_number is not None else max(int(ti.get("try_number") or 0), 1)
    if number < 1:
        raise CliError(f"--try {number}: try numbers start at 1", exit_code=2)
    path = ti_path(args.dag_id, args.run_id, args.task_id) + f"/logs/{number}"
    token: str | None = None
    collected: list[dict[str, Any]] = []
    last_placeholder: str | None = None
    while True:
        params: dict[str, Any] = {"map_index": args.map_index}
        if token is not None:
            params["token"] = token
        body = client.get(path, params)
        lines = body.get("content") or []
        next_token = body.get("continuation_token")
        placeholder = (len(lines) == 1 and isinstance(lines[0], dict)
                       and lines[0].get("logger") == NO_LOGS_LOGGER)
        progressed = bool(lines) and not placeholder
        if placeholder and lines[0].get("event") == last_placeholder:
            lines = []  # the same "no logs yet" line again: shown once
        elif placeholder:
            last_placeholder = lines[0].get("event")
        if lines:
            for line in lines:
                if not isinstance(line, dict):
                    line = {"event": str(line)}
                if args.output == "yaml":
                    collected.append(line)
                elif args.output == "json":
                    print(json.dumps(line, separators=(",", ":")), flush=True)
                else:
                    print(_format_line(line), flush=True)
        if next_token is None:
            break
        if not args.follow and not progressed:
            break
        token = next_token
        if not progressed:
            time.sleep(args.poll_interval)
    if args.output == "yaml":
        output.dump(collected, "yaml")
    return 0


def _ti_list(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict) and "task_instances" in result:
        return list(result["task_instances"])
    return [result] if isinstance(result, dict) else []


def cmd_clear(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    body = {"dry_run": args.dry_run, "dag_run_id": args.run_id, "task_ids": args.task_ids,
            "only_failed": args.only_failed, "include_downstream": args.downstream,
            "include_upstream": args.upstream, "reset_dag_runs": True}
    result = client.post(dag_path(args.dag_id) + "/clearTaskInstances", body)
    tis = _ti_list(result)
    if args.output != "table":
        output.dump(result, args.output)
        return 0
    output.table(tis, TI_COLUMNS)
    verb = "would be cleared (dry run)" if args.dry_run else "cleared"
    print(f"{len(tis)} task instance(s) {verb}", file=sys.stderr if args.dry_run else sys.stdout)
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    body: dict[str, Any] = {"new_state": args.state, "include_downstream": args.downstream,
                            "include_upstream": args.upstream}
    if args.note is not None:
        body["note"] = args.note
    result = client.patch(ti_path(args.dag_id, args.run_id, args.task_id, args.map_index), body)
    if args.output != "table":
        output.dump(result, args.output)
        return 0
    tis = _ti_list(result)
    output.table(tis, TI_COLUMNS)
    print(f"{len(tis)} task instance(s) marked {args.state}")
    return 0
