"""`leoflow login` / `leoflow logout`: get a token from ``POST /auth/token`` and keep it for the CLI.

The password never comes from argv (``ps`` shows argv): it is asked without echo on a terminal
or read from stdin with ``--password-stdin``. The token is stored per server URL in the CLI file
(mode 0600, see leoflow.cli.client) and sent only to that server.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from leoflow.cli.client import (
    EXIT_CODES_EPILOG,
    ApiClient,
    Settings,
    add_server_args,
    cli_file,
    read_cli_file,
    resolve,
    write_cli_file,
)
from leoflow.cli.errors import CliError


def register(sub: argparse._SubParsersAction) -> None:
    login = sub.add_parser(
        "login", help="log in to a server and store the token for later commands",
        description="Ask the server for a token (POST /auth/token) and store it in the CLI config "
                    f"({cli_file()}, mode 0600) for that server; the server becomes the default one.",
        epilog=EXIT_CODES_EPILOG)
    add_server_args(login)
    login.add_argument("--username", "-u", help="user name (asked on a terminal when omitted)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(func=cmd_login)

    logout = sub.add_parser("logout", help="forget the stored token of a server", epilog=EXIT_CODES_EPILOG)
    add_server_args(logout)
    logout.set_defaults(func=cmd_logout)


def _expiry(token: str) -> str:
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return ""
    return f"; it expires {datetime.fromtimestamp(exp, UTC).strftime('%Y-%m-%d %H:%M:%SZ')}"


def cmd_login(args: argparse.Namespace) -> int:
    args.token = None  # a token flag makes no sense here: we are getting one
    settings = resolve(args)
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise CliError("--username is required when stdin is not a terminal", exit_code=2)
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise CliError("no terminal to ask the password on: pass it with --password-stdin", exit_code=2)
    if not username or not password:
        raise CliError("a username and a password are required", exit_code=2)
    client = ApiClient(Settings(settings.server, None, settings.timeout, settings.server_from, "none"))
    resp = client.request("POST", "/auth/token", json_body={"username": username, "password": password}, ok=(401,))
    if resp.status_code == 401:
        raise CliError(f"login to {settings.server} failed: invalid username or password")
    token = str(client._json(resp)["access_token"])
    data = read_cli_file()
    tokens = dict(data.get("tokens") or {})
    tokens[settings.server] = token
    path = write_cli_file({"server": settings.server, "tokens": tokens})
    print(f"logged in to {settings.server} as {username}; token stored in {path}{_expiry(token)}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    args.token = None
    settings = resolve(args)
    data = read_cli_file()
    tokens = dict(data.get("tokens") or {})
    if tokens.pop(settings.server, None) is None:
        print(f"no stored token for {settings.server}")
        return 0
    write_cli_file({"server": data.get("server"), "tokens": tokens})
    print(f"forgot the token for {settings.server}")
    return 0
