"""`leoflow db clean`: apply the retention period to the store (finished runs, audit log, tokens).

Finished runs older than ``--retention-days`` (default ``[store] retention_days``) are deleted with
their task instances, tries and XComs; younger finished runs are compacted; active runs are never
touched. ``--dry-run`` reports the same figures and changes nothing.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from leoflow import config as config_mod
from leoflow.cli.errors import CliError
from leoflow.store.port import StoreError


def _clean(args: argparse.Namespace) -> int:
    from leoflow.store import factory
    from leoflow.store.repos import Repositories
    from leoflow.store.repos.retention import clean

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        raise CliError(str(exc)) from exc
    days = cfg.store.retention_days if args.retention_days is None else args.retention_days
    if days < 0:
        raise CliError(f"--retention-days must be >= 0, got {days}", exit_code=2)
    try:
        store = factory.open_store(cfg)
    except StoreError as exc:
        raise CliError(f"cannot open the store: {exc}") from exc
    try:
        repos = Repositories.open(store, root=cfg.store.prefix)
        report = clean(repos, now=datetime.now(UTC), retention_days=days, dry_run=args.dry_run,
                       compact=not args.no_compact)
    except StoreError as exc:
        raise CliError(f"db clean failed: {exc}") from exc
    finally:
        store.close()
    if args.json:
        print(json.dumps({"dry_run": report.dry_run, "retention_days": days, "runs": report.runs,
                          "audit_events": report.audit_events, "orphans": report.orphans, "keys": report.keys,
                          "bytes": report.bytes}))
    else:
        verb = "would remove" if report.dry_run else "removed"
        print(f"db clean (retention {days} days): {verb} {report.runs} finished runs, {report.audit_events} audit "
              f"events, {report.orphans} orphan keys; {report.keys} keys, {report.bytes} bytes in total")
        if args.verbose:
            for line in report.details:
                print(f"  {line}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="store maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    db.set_defaults(func=lambda _args: db.print_help() or 2)
    p = db_sub.add_parser("clean", help="delete finished runs and audit entries older than the retention period")
    p.add_argument("--retention-days", type=int, default=None,
                   help="keep this many days (default: [store] retention_days)")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed; change nothing")
    p.add_argument("--no-compact", action="store_true", help="do not compact the finished runs that are kept")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="list every run removed")
    p.add_argument("--config", default=None, help="config file (default: $LEOFLOW_CONFIG)")
    p.set_defaults(func=_clean)
