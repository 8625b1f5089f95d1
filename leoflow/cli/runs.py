"""`leoflow runs list|show|clear|mark`: DAG runs on a running server."""

from __future__ import annotations

import argparse
from typing import Any

from leoflow.cli import output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.dags_api import RUN_COLUMNS, TI_COLUMNS, parse_date
from leoflow.cli.progress import task_instances

RUN_STATES = ("queued", "running", "success", "failed")


def run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{seg(dag_id)}/dagRuns/{seg(run_id)}"


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list, inspect, clear and mark DAG runs", epilog=EXIT_CODES_EPILOG)
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    runs.set_defaults(func=lambda _args: runs.print_help() or 2)
    parent = api_parent()

    lst = runs_sub.add_parser("list", parents=[parent], help="recent runs, newest first", epilog=EXIT_CODES_EPILOG)
    lst.add_argument("dag_id", nargs="?", metavar="DAG_ID", help="only this DAG's runs (default: all DAGs)")
    lst.add_argument("--state", action="append", choices=RUN_STATES, default=[], help="only runs in this state "
                     "(repeatable)")
    lst.add_argument("--since", metavar="ISO", help="only runs whose run_after is at or after this time")
    lst.add_argument("--limit", type=int, default=25, metavar="N", help="at most N runs (default 25)")
    lst.set_defaults(func=cmd_list)

    show = runs_sub.add_parser("show", parents=[parent], help="one run and its task instances",
                               epilog=EXIT_CODES_EPILOG)
    show.add_argument("dag_id", metavar="DAG_ID")
    show.add_argument("run_id", metavar="RUN_ID")
    show.set_defaults(func=cmd_show)

    clear = runs_sub.add_parser("clear", parents=[parent], help="clear a run so its tasks run again",
                                epilog=EXIT_CODES_EPILOG)
    clear.add_argument("dag_id", metavar="DAG_ID")
    clear.add_argument("run_id", metavar="RUN_ID")
    clear.add_argument("--only-failed", action="store_true", help="clear only failed tasks")
    clear.add_argument("--dry-run", action="store_true", help="list the task instances it would clear; change nothing")
    clear.set_defaults(func=cmd_clear)

    mark = runs_sub.add_parser("mark", parents=[parent], help="set a run's state (success, failed or queued)",
                               epilog=EXIT_CODES_EPILOG)
    mark.add_argument("dag_id", metavar="DAG_ID")
    mark.add_argument("run_id", metavar="RUN_ID")
    mark.add_argument("state", choices=("success", "failed", "queued"), metavar="STATE",
                      help="success | failed | queued")
    mark.add_argument("--note", help="a note to record with the run")
    mark.set_defaults(func=cmd_mark)


def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"order_by": "-run_after"}
    if args.state:
        params["state"] = args.state
    since = parse_date(args.since, "--since")
    if since:
        params["run_after_gte"] = since
    client = ApiClient.from_args(args)
    path = f"/api/v2/dags/{seg(args.dag_id) if args.dag_id else '~'}/dagRuns"
    runs = list(client.paginate(path, "dag_runs", params, limit=max(0, args.limit)))
    output.emit(runs, args.output, runs, RUN_COLUMNS)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    run = client.get(run_path(args.dag_id, args.run_id))
    tis = task_instances(client, args.dag_id, args.run_id)
    if args.output != "table":
        output.dump({**run, "task_instances": tis}, args.output)
        return 0
    fields = ["dag_id", "dag_run_id", "state", "run_type", "logical_date", "run_after", "queued_at", "start_date",
              "end_date", "duration", "triggered_by", "triggering_user_name", "conf", "note", "dag_versions"]
    item = {**run, "dag_versions": [v.get("version_number") for v in run.get("dag_versions") or []]}
    output.details(item, "table", [f for f in fields if f in item], colours={"state": output.state_colour})
    print()
    output.table(tis, TI_COLUMNS)
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    body = {"dry_run": args.dry_run, "only_failed": args.only_failed}
    result = client.post(run_path(args.dag_id, args.run_id) + "/clear", body)
    if args.output != "table":
        output.dump(result, args.output)
        return 0
    if args.dry_run:
        tis = result.get("task_instances") or []
        output.table(tis, TI_COLUMNS)
        output.note(f"dry run: {len(tis)} task instance(s) would be cleared")
    else:
        print(f"cleared run {args.run_id} of {args.dag_id}; it is {result.get('state')} again")
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    body: dict[str, Any] = {"state": args.state}
    if args.note is not None:
        body["note"] = args.note
    run = client.patch(run_path(args.dag_id, args.run_id), body)
    if args.output != "table":
        output.dump(run, args.output)
    else:
        state = run.get("state")
        print(f"run {args.run_id} of {args.dag_id}: {output.paint(str(state), output.state_colour(state))}")
    return 0
