"""`leoflow dags list|show|pause|unpause|trigger` against a running server (registered by dags.py).

``trigger --wait`` follows the run (leoflow.cli.progress) and exits 1 unless it succeeds, so a
script can ``leoflow dags trigger etl --wait && deploy``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from leoflow.cli import output
from leoflow.cli.client import EXIT_CODES_EPILOG, ApiClient, api_parent, seg
from leoflow.cli.errors import CliError
from leoflow.cli.output import col, state_colour
from leoflow.cli.progress import follow_run

DAG_COLUMNS = [
    col("DAG_ID", "dag_id"),
    col("PAUSED", "is_paused", lambda v: "33" if v else "32"),
    col("SCHEDULE", lambda d: d.get("timetable_summary") or "None"),
    col("NEXT_RUN", "next_dagrun_run_after"),
    col("TAGS", lambda d: [t.get("name") for t in d.get("tags") or []]),
    col("OWNERS", "owners"),
    col("IMPORT_ERRORS", "has_import_errors", lambda v: "31" if v else None),
]
TASK_COLUMNS = [
    col("TASK_ID", "task_id"),
    col("OPERATOR", "operator_name"),
    col("RETRIES", "retries"),
    col("POOL", "pool"),
    col("QUEUE", "queue"),
    col("DOWNSTREAM", "downstream_task_ids"),
]
RUN_COLUMNS = [
    col("DAG_ID", "dag_id"),
    col("RUN_ID", "dag_run_id"),
    col("STATE", "state", state_colour),
    col("TYPE", "run_type"),
    col("RUN_AFTER", "run_after"),
    col("STARTED", "start_date"),
    col("ENDED", "end_date"),
    col("DURATION", lambda r: f"{r['duration']:.1f}s" if r.get("duration") is not None else ""),
]
TI_COLUMNS = [
    col("TASK_ID", "task_id"),
    col("MAP", lambda t: "" if t.get("map_index", -1) == -1 else t.get("map_index")),
    col("STATE", "state", state_colour),
    col("TRY", "try_number"),
    col("STARTED", "start_date"),
    col("ENDED", "end_date"),
    col("DURATION", lambda t: f"{t['duration']:.2f}s" if t.get("duration") is not None else ""),
    col("HOST", "hostname"),
]


def parse_conf(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--conf is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       exit_code=2) from None
    if not isinstance(value, dict):
        raise CliError(f"--conf must be a JSON object such as '{{\"key\": 1}}', got {type(value).__name__}",
                       exit_code=2)
    return value


def parse_date(text: str | None, flag: str) -> str | None:
    """An ISO 8601 instant, sent to the API in UTC; a date without a zone is taken as UTC."""
    if text is None:
        return None
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{flag} {text!r}: expected an ISO 8601 date or time such as 2026-01-31 or "
                       "2026-01-31T06:00:00Z", exit_code=2) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def dag_path(dag_id: str) -> str:
    return f"/api/v2/dags/{seg(dag_id)}"


# -- registration ---------------------------------------------------------------------------


def add_server_list_args(p: argparse.ArgumentParser) -> None:
    """``dags list`` is shared with the offline ``--repo`` form: these flags only apply to the server form."""
    from leoflow.cli.client import add_server_args

    add_server_args(p)
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="only DAGs with this tag (repeatable)")
    p.add_argument("--pattern", metavar="TEXT", help="only DAG ids containing TEXT (SQL LIKE, %% and _ allowed)")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--paused", action="store_true", help="only paused DAGs")
    state.add_argument("--active", action="store_true", help="only unpaused DAGs")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N DAGs")


def register_server(dags_sub: argparse._SubParsersAction) -> None:
    parent = api_parent()
    show = dags_sub.add_parser("show", parents=[parent], help="one DAG's details and tasks", epilog=EXIT_CODES_EPILOG)
    show.add_argument("dag_id", metavar="DAG_ID")
    show.set_defaults(func=cmd_show)

    for name, paused in (("pause", True), ("unpause", False)):
        effect = "stop" if paused else "start"
        p = dags_sub.add_parser(name, parents=[parent], help=f"{name} DAGs (scheduled runs {effect})",
                                epilog=EXIT_CODES_EPILOG)
        p.add_argument("dag_ids", nargs="+", metavar="DAG_ID")
        p.set_defaults(func=cmd_pause, paused=paused)

    trig = dags_sub.add_parser(
        "trigger", parents=[parent], help="start a run now; --wait follows it and fails if the run fails",
        description="Trigger a manual run of DAG_ID. With --wait, show live progress (tasks done/running/failed "
                    "and elapsed time) until the run ends, then each task's state; exit 1 if the run failed.",
        epilog=EXIT_CODES_EPILOG)
    trig.add_argument("dag_id", metavar="DAG_ID")
    trig.add_argument("--conf", metavar="JSON",
                      help="run configuration, a JSON object (checked against the DAG's params)")
    trig.add_argument("--logical-date", metavar="ISO", help="the run's logical date (default: none, as Airflow 3)")
    trig.add_argument("--run-id", metavar="ID", help="run id (default: manual__<time>)")
    trig.add_argument("--note", help="a note shown with the run")
    trig.add_argument("--unpause", action="store_true", help="unpause the DAG first if it is paused")
    trig.add_argument("--wait", action="store_true", help="follow the run until it ends; exit 1 unless it succeeds")
    trig.add_argument("--wait-timeout", type=float, metavar="SECONDS", help="give up waiting after this long (exit 1)")
    trig.add_argument("--poll-interval", type=float, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS)
    trig.set_defaults(func=cmd_trigger)


# -- commands -------------------------------------------------------------------------------


def cmd_list_server(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"order_by": "dag_id"}
    if args.tag:
        params["tags"] = args.tag
    if args.pattern:
        params["dag_id_pattern"] = args.pattern
    if args.paused or args.active:
        params["paused"] = "true" if args.paused else "false"
    client = ApiClient.from_args(args)
    dags = list(client.paginate("/api/v2/dags", "dags", params, limit=args.limit))
    output.emit(dags, args.output, dags, DAG_COLUMNS)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    dag = client.get(dag_path(args.dag_id) + "/details")
    tasks = client.get(dag_path(args.dag_id) + "/tasks").get("tasks", [])
    if args.output != "table":
        output.dump({**dag, "tasks": tasks}, args.output)
        return 0
    fields = ["dag_id", "description", "is_paused", "timetable_summary", "timetable_description", "owners", "tags",
              "fileloc", "bundle_name", "bundle_version", "max_active_runs", "max_active_tasks", "catchup",
              "next_dagrun_run_after", "has_import_errors", "params"]
    item = {**dag, "tags": [t.get("name") for t in dag.get("tags") or []],
            "latest_dag_version": (dag.get("latest_dag_version") or {}).get("version_number")}
    output.details(item, "table", [f for f in [*fields, "latest_dag_version"] if f in item])
    print()
    output.table(tasks, TASK_COLUMNS)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    results = [client.patch(dag_path(d), {"is_paused": args.paused}) for d in args.dag_ids]
    if args.output != "table":
        output.dump(results, args.output)
        return 0
    for dag in results:
        print(f"{dag['dag_id']}: {'paused' if dag.get('is_paused') else 'unpaused'}")
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    conf = parse_conf(args.conf)
    logical_date = parse_date(args.logical_date, "--logical-date")
    client = ApiClient.from_args(args)
    if args.unpause:
        client.patch(dag_path(args.dag_id), {"is_paused": False})
    body: dict[str, Any] = {"logical_date": logical_date, "conf": conf}
    if args.run_id:
        body["dag_run_id"] = args.run_id
    if args.note:
        body["note"] = args.note
    run = client.post(dag_path(args.dag_id) + "/dagRuns", body)
    run_id = run["dag_run_id"]
    if not args.wait:
        if args.output != "table":
            output.dump(run, args.output)
        else:
            print(f"triggered {args.dag_id} run {run_id} (state {run.get('state')})")
            dag = client.get(dag_path(args.dag_id))
            if dag.get("is_paused"):
                output.note(f"note: {args.dag_id} is paused, so the run stays queued until you "
                            f"`leoflow dags unpause {args.dag_id}` (or trigger with --unpause)")
        return 0
    output.note(f"triggered {args.dag_id} run {run_id}; following it (Ctrl-C stops following, not the run)")
    if client.get(dag_path(args.dag_id)).get("is_paused"):
        output.note(f"warning: {args.dag_id} is paused: the run will not start until it is unpaused "
                    "(use --unpause)")
    final, tis = follow_run(client, args.dag_id, run_id, interval=args.poll_interval, timeout=args.wait_timeout)
    tis.sort(key=lambda t: (t.get("start_date") or "~", t.get("task_id") or "", t.get("map_index", -1)))
    state = final.get("state")
    if args.output != "table":
        output.dump({**final, "task_instances": tis}, args.output)
    else:
        output.table(tis, TI_COLUMNS)
        duration = final.get("duration")
        took = f" in {duration:.1f}s" if isinstance(duration, int | float) else ""
        print(f"run {run_id} of {args.dag_id}: {output.paint(str(state), state_colour(state))}{took}")
    if state != "success":
        failed = [t["task_id"] for t in tis if t.get("state") == "failed"]
        upstream = [t["task_id"] for t in tis if t.get("state") == "upstream_failed"]
        detail = "; ".join(part for part in (
            f"failed: {', '.join(failed)}" if failed else "",
            f"upstream_failed: {', '.join(upstream)}" if upstream else "") if part)
        hint = f"; see `leoflow tasks logs {args.dag_id} {run_id} {failed[0]}`" if failed else ""
        print(f"leoflow: run {run_id} {state}" + (f" ({detail})" if detail else "") + hint, file=sys.stderr)
        return 1
    return 0
