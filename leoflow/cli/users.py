"""``leoflow users create|list|delete|reset-password``: manage API/UI users directly in the store.

Works without a running server (it opens the configured store), so the first admin can be made
before ``leoflow-server`` starts. Passwords are never taken from argv (it is visible in ``ps``):
``--password-stdin`` reads one line from stdin; without it a strong password is generated and
printed once.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from leoflow.cli.client import add_output_arg
from leoflow.cli.errors import CliError
from leoflow.cli.output import col, emit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="manage users of the API and UI")
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    sub = parser.add_subparsers(dest="users_command", required=True)

    create = sub.add_parser("create", help="create a user (prints a generated password unless --password-stdin)")
    create.add_argument("username")
    create.add_argument("--role", default="viewer", help="viewer | user | op | admin (default: viewer)")
    create.add_argument("--email")
    create.add_argument("--first-name")
    create.add_argument("--last-name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.set_defaults(func=_create)

    lst = sub.add_parser("list", help="list users")
    add_output_arg(lst)
    lst.set_defaults(func=_list)

    delete = sub.add_parser("delete", help="delete a user")
    delete.add_argument("username")
    delete.set_defaults(func=_delete)

    reset = sub.add_parser("reset-password", help="set a new password (generated unless --password-stdin)")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true")
    reset.set_defaults(func=_reset)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from leoflow.config import ConfigError, load
    from leoflow.store import factory
    from leoflow.store.repos import build

    try:
        config = load(getattr(args, "config", None))
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    store = factory.open_store(config)
    return store, build(store, config=config, clock=lambda: datetime.now(UTC))


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    from leoflow.api.auth.passwords import generate_password

    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on stdin")
        if len(line) < 8:
            raise CliError("password must be at least 8 characters")
        return line, False
    return generate_password(), True


def _validate_username(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 256 or any(ord(c) < 32 for c in name):
        raise CliError(f"invalid username {name!r}: 1-256 printable characters")
    return name


def _create(args: argparse.Namespace) -> int:
    from leoflow.api.auth.passwords import hash_password
    from leoflow.api.auth.roles import Role
    from leoflow.domain.records import User
    from leoflow.store.repos.errors import AlreadyExists

    username = _validate_username(args.username)
    try:
        role = Role.parse(args.role).label
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    password, generated = _password(args)
    store, repos = _open(args)
    try:
        user = User(username=username, password_hash=hash_password(password), role=role, email=args.email,
                    first_name=args.first_name, last_name=args.last_name, created_at=datetime.now(UTC))
        try:
            repos.users.create(user)
        except AlreadyExists as exc:
            raise CliError(f"user {username!r} already exists; use `leoflow users reset-password`") from exc
    finally:
        store.close()
    print(f"created user {username!r} with role {role}")
    if generated:
        print(f"password: {password}")
        print("(shown once; store it now)")
    return 0


def _list(args: argparse.Namespace) -> int:
    store, repos = _open(args)
    try:
        users = sorted((v.record for v in repos.users.all()), key=lambda u: u.username)
    finally:
        store.close()
    rows = [{"username": u.username, "role": u.role, "email": u.email, "active": u.active,
             "created_at": u.created_at.isoformat() if u.created_at else None} for u in users]
    emit(rows, args.output, rows, [col("USERNAME", "username"), col("ROLE", "role"),
                                   col("ACTIVE", lambda r: "yes" if r["active"] else "no"), col("EMAIL", "email")])
    return 0


def _delete(args: argparse.Namespace) -> int:
    store, repos = _open(args)
    try:
        if not repos.users.delete(args.username):
            raise CliError(f"user {args.username!r} does not exist")
    finally:
        store.close()
    print(f"deleted user {args.username!r}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from leoflow.api.auth.passwords import hash_password
    from leoflow.store.repos.errors import NotFound

    password, generated = _password(args)
    store, repos = _open(args)
    try:
        try:
            repos.users.set_password_hash(args.username, hash_password(password))
        except NotFound as exc:
            raise CliError(f"user {args.username!r} does not exist") from exc
    finally:
        store.close()
    print(f"password of {args.username!r} reset")
    if generated:
        print(f"password: {password}")
        print("(shown once; store it now)")
    return 0
