"""`leoflow ui install|status`: fetch the pinned Airflow UI bundle into LEOFLOW_HOME."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leoflow.cli.errors import CliError
from leoflow.ui import bundle


def _progress(msg: str) -> None:
    print(f"leoflow ui: {msg}", file=sys.stderr, flush=True)


def _home(args: argparse.Namespace) -> Path | None:
    return Path(args.home) if getattr(args, "home", None) else None


def _install(args: argparse.Namespace) -> int:
    try:
        root = bundle.install(_home(args), progress=_progress)
    except bundle.BundleError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot install the UI bundle: {exc}") from exc
    print(root)
    return 0


def _status(args: argparse.Namespace) -> int:
    home = _home(args)
    if bundle.is_installed(home):
        print(f"installed: Airflow UI {bundle.AIRFLOW_VERSION} in {bundle.ui_root(home)}")
        return 0
    raise CliError(f"not installed in {bundle.ui_root(home)}: {bundle.INSTALL_HINT}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="manage the Airflow UI bundle Leoflow serves")
    usub = p.add_subparsers(dest="ui_command", metavar="ACTION")
    inst = usub.add_parser(
        "install",
        help=f"download apache-airflow-core=={bundle.AIRFLOW_VERSION} (pinned sha256) and extract the UI",
    )
    inst.add_argument("--home", help="LEOFLOW_HOME to install into (default: $LEOFLOW_HOME)")
    inst.set_defaults(func=_install)
    st = usub.add_parser("status", help="say whether the UI bundle is installed")
    st.add_argument("--home", help="LEOFLOW_HOME to check (default: $LEOFLOW_HOME)")
    st.set_defaults(func=_status)

    def _usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_usage)
