"""`leoflow config show`: the effective configuration (file + ``LEOFLOW_*`` environment), with
secrets redacted, plus where the CLI would connect and which token it would send.

A key is secret when its name holds a secret word (token, secret, password, ...) and it holds a
value rather than naming a file or a mount: ``auth.jwt_secret`` is redacted,
``auth.jwt_secret_file`` is shown, because the path is what an operator needs to check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from leoflow.cli import output
from leoflow.cli.client import EXIT_CODES_EPILOG, add_output_arg, add_server_args, cli_file, resolve
from leoflow.cli.errors import CliError

SECRET_WORDS = ("token", "secret", "password", "passwd", "passphrase", "private_key", "credential")
NOT_SECRET_SUFFIXES = ("_file", "_path", "_mount", "_dir", "_seconds", "_wrapped", "_url", "_role")
REDACTED = "<redacted>"


def is_secret(name: str, value: Any) -> bool:
    lowered = name.lower()
    return (isinstance(value, str) and value != "" and any(w in lowered for w in SECRET_WORDS)
            and not lowered.endswith(NOT_SECRET_SUFFIXES))


def redacted(config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = {k: (REDACTED if is_secret(k, v) else v) for k, v in dataclasses.asdict(value).items()}
        else:
            out[f.name] = REDACTED if is_secret(f.name, value) else value
    return out


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="show the effective configuration", epilog=EXIT_CODES_EPILOG)
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    config.set_defaults(func=lambda _args: config.print_help() or 2)
    show = config_sub.add_parser(
        "show", help="the effective config (file + LEOFLOW_* environment), secrets redacted",
        description="Print the configuration every Leoflow process on this machine would load (the TOML file "
                    "from --config or $LEOFLOW_CONFIG, overlaid by LEOFLOW_<SECTION>__<KEY> variables), with "
                    "secrets redacted, and the CLI's server and token source.", epilog=EXIT_CODES_EPILOG)
    show.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    show.add_argument("--section", help="only this section, e.g. scheduler")
    add_output_arg(show)
    add_server_args(show)
    show.set_defaults(func=cmd_show)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def cmd_show(args: argparse.Namespace) -> int:
    from leoflow.config import ConfigError, load

    try:
        config = load(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    data = redacted(config)
    data["home"] = str(config.home_path)
    settings = resolve(args)
    data["cli"] = {
        "server": settings.server,
        "server_from": settings.server_from,
        "token": f"set (from {settings.token_from})" if settings.token else "not set",
        "cli_config_file": str(cli_file()),
        "config_file": args.config or os.environ.get("LEOFLOW_CONFIG") or "",
    }
    if args.section:
        if args.section not in data or not isinstance(data[args.section], dict):
            sections = ", ".join(k for k, v in data.items() if isinstance(v, dict))
            raise CliError(f"no config section {args.section!r}; sections: {sections}", exit_code=2)
        data = {args.section: data[args.section]}
    if args.output != "table":
        output.dump(data, args.output)
        return 0
    for key, value in data.items():
        if not isinstance(value, dict):
            print(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"\n[{key}]")
            for name, item in value.items():
                print(f"{name} = {_toml_value(item)}")
    return 0
