"""Entry point of `leoflow`: discovers command groups so each lives in a module of its own.

Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import leoflow
import leoflow.cli as cli_pkg
from leoflow.cli.errors import CliError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leoflow",
        description="Leoflow: GitOps workflow orchestration on Nomad, Consul and Vault, driven by the Airflow 3 UI.",
        epilog="exit codes: 0 ok, 1 failure (refused by the server, failed run, not found, unreachable), "
        "2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"leoflow {leoflow.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in ("main", "errors") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"leoflow.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"leoflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
