"""`leoflow dags ...`: DAG files as a DAG repository's CI sees them.

``validate`` and ``list`` work on files on disk and need no server or store; they parse exactly as
the scheduler's sync does (same loader, same Python sandbox). ``list`` without ``--repo`` and
``show|pause|unpause|trigger`` ask a running server (leoflow.cli.dags_api); ``test`` runs one DAG on
this machine without a server (leoflow.cli.dags_test).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from leoflow.cli.errors import CliError
from leoflow.config import load as load_config
from leoflow.dags.errors import DagFileError
from leoflow.dags.loader import (
    PY_SUFFIX,
    YAML_SUFFIXES,
    ParsedFile,
    PythonLimits,
    load_directory,
    load_file,
    with_duplicate_check,
)
from leoflow.domain.serialize import dag_hash

EXIT_INVALID = 1


def register(sub: argparse._SubParsersAction) -> None:
    from leoflow.cli import dags_api, dags_test
    from leoflow.cli.client import EXIT_CODES_EPILOG

    dags = sub.add_parser("dags", help="list, trigger, test and validate DAGs", epilog=EXIT_CODES_EPILOG)
    dags_sub = dags.add_subparsers(dest="dags_command", metavar="SUBCOMMAND")
    dags.set_defaults(func=lambda _args: dags.print_help() or 2)
    _add_validate(dags_sub)
    _add_list(dags_sub)
    dags_api.register_server(dags_sub)
    dags_test.register_test(dags_sub)


def _limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--python-timeout", type=float, default=None, metavar="SECONDS",
                        help="time limit for evaluating one Python DAG file "
                             "(default: config dags.python_parse_timeout)")
    parser.add_argument("--python-memory-mb", type=int, default=None, metavar="MB",
                        help="memory limit for evaluating one Python DAG file (default: config "
                             "dags.python_parse_memory_mb)")


def _limits(args: argparse.Namespace) -> PythonLimits:
    try:
        config = load_config()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return PythonLimits(
        timeout=args.python_timeout if args.python_timeout is not None else config.dags.python_parse_timeout,
        memory_mb=args.python_memory_mb if args.python_memory_mb is not None else config.dags.python_parse_memory_mb,
    )


def _add_validate(dags_sub: argparse._SubParsersAction) -> None:
    p = dags_sub.add_parser(
        "validate", help="check DAG files or a DAG repository; exit 1 if anything is invalid",
        description="Parse every DAG file under each PATH (a directory) or each given file, as the scheduler "
                    "would. Prints each problem as file:line:col: message; exits 0 when all are valid.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a DAG repository directory or DAG files")
    _limit_args(p)
    p.set_defaults(func=cmd_validate)


def _add_list(dags_sub: argparse._SubParsersAction) -> None:
    from leoflow.cli.client import EXIT_CODES_EPILOG, add_output_arg
    from leoflow.cli.dags_api import add_server_list_args

    p = dags_sub.add_parser(
        "list", help="the server's DAGs; with --repo PATH, the DAGs a repository would load (offline)",
        description="Without --repo: the DAGs of the running server (filters --tag, --pattern, --paused, "
                    "--active). With --repo PATH: parse the repository on disk as the scheduler would "
                    "(id, schedule, tasks, content version) without any server.",
        epilog=EXIT_CODES_EPILOG)
    p.add_argument("--repo", metavar="PATH", help="list a DAG repository directory on disk instead (offline)")
    add_output_arg(p)
    _limit_args(p)
    add_server_list_args(p)
    p.set_defaults(func=cmd_list)


def _shown(parsed: ParsedFile, prefix: Path | None) -> ParsedFile:
    """Report paths as the user typed them, so editors and CI annotations can open them."""
    if prefix is None:
        return parsed
    shown = (prefix / parsed.fileloc).as_posix()
    return replace(parsed, errors=tuple(replace(e, filename=shown) for e in parsed.errors))


def load_paths(paths: list[str], limits: PythonLimits) -> list[ParsedFile]:
    results: list[ParsedFile] = []
    singles: list[ParsedFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            results += [_shown(p, path) for p in load_directory(path, limits)]
        elif path.is_file():
            if not path.name.endswith((*YAML_SUFFIXES, PY_SUFFIX)):
                error = DagFileError(raw, 1, 1, "not a DAG file (expected .yaml, .yml or .py)")
                results.append(ParsedFile(raw, "", errors=(error,)))
                continue
            parsed = load_file(path.parent, path.name, limits)
            singles.append(_shown(parsed, path.parent if str(path.parent) != "." else None))
        else:
            results.append(ParsedFile(raw, "", errors=(DagFileError(raw, 1, 1, "no such file or directory"),)))
    return results + with_duplicate_check(singles)


def cmd_validate(args: argparse.Namespace) -> int:
    results = load_paths(args.paths, _limits(args))
    errors = [e for r in results for e in r.errors]
    for error in errors:
        print(error)
        if error.detail:
            print("\n".join("    " + line for line in error.detail.rstrip().splitlines()))
    dags = sum(len(r.dags) for r in results)
    bad_files = len({e.filename for e in errors})
    if errors:
        print(f"{len(errors)} error(s) in {bad_files} file(s); {dags} valid DAG(s)", file=sys.stderr)
        return EXIT_INVALID
    if not results:
        print("no DAG files found", file=sys.stderr)
        return 0
    print(f"{dags} DAG(s) in {len(results)} file(s): all valid", file=sys.stderr)
    return 0


def _commit(repo: Path) -> str | None:
    import git

    try:
        return git.Repo(repo, search_parent_directories=True).head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None


def cmd_list(args: argparse.Namespace) -> int:
    if not args.repo:
        from leoflow.cli.dags_api import cmd_list_server

        return cmd_list_server(args)
    repo = Path(args.repo)
    if not repo.is_dir():
        raise CliError(f"--repo {args.repo}: not a directory")
    results = load_directory(repo, _limits(args))
    commit = _commit(repo)
    rows = []
    for parsed in results:
        for dag in parsed.dags:
            rows.append({"dag_id": dag.dag_id, "schedule": dag.schedule, "tasks": len(dag.tasks),
                         "version": dag_hash(dag)[:12], "fileloc": dag.fileloc, "commit": commit})
    rows.sort(key=lambda r: r["dag_id"])
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif args.output == "yaml":
        from leoflow.cli.output import dump

        dump(rows, "yaml")
    else:
        header = ("DAG_ID", "SCHEDULE", "TASKS", "VERSION", "FILE")
        table = [header] + [(r["dag_id"], r["schedule"] or "None", str(r["tasks"]), r["version"], r["fileloc"])
                            for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        where = f"commit {commit[:12]} (working tree)" if commit else "a directory outside git"
        print(f"{len(rows)} DAG(s) from {repo} at {where}; VERSION is the content hash that decides versions",
              file=sys.stderr)
    failed = [e for r in results for e in r.errors]
    if failed:
        files = sorted({e.filename for e in failed})
        print(f"{len(files)} file(s) would be import errors (see `leoflow dags validate {args.repo}`): "
              + ", ".join(files), file=sys.stderr)
    return 0
