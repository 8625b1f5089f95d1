"""``leoflow vault bootstrap|agent-add|secret-id|rotate-key``: set up a Vault (or OpenBao) for Leoflow.

The operator's own Vault token is read from ``--token-file`` or the ``VAULT_TOKEN`` environment
variable, never from argv (``ps`` shows argv) and never from ``~/.vault-token`` behind the
operator's back. Secret ids are written to files with mode 0600, never printed; role ids are not
secret and are written the same way for convenience. Every command is idempotent except
``secret-id`` (which mints a new one) and ``rotate-key``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from leoflow.cli.errors import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("vault", help="configure Vault/OpenBao for Leoflow (agents, secrets, keys)",
                                   description="Configure Vault for Leoflow. The operator token comes from "
                                   "--token-file or $VAULT_TOKEN; addresses and names from [vault] in the config.")
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.add_argument("--addr", help="Vault address (default: [vault] addr)")
    parser.add_argument("--token-file", help="file holding the operator's Vault token (default: $VAULT_TOKEN)")
    sub = parser.add_subparsers(dest="vault_command", required=True)

    boot = sub.add_parser("bootstrap", help="create or update mounts, policies, OIDC key/role, server AppRole")
    boot.add_argument("--pki", action="store_true", help="also set up a PKI mount and roles for agent mTLS")
    boot.add_argument("--issuer", help="identity token issuer base URL (default: Vault's own address)")
    boot.add_argument("--identity-ttl", help="agent identity token life (default: [vault] identity_ttl)")
    boot.add_argument("--nomad-jwks-url", help="Nomad's JWKS (http://<nomad>:4646/.well-known/jwks.json): also "
                      "set up workload identity login (jwt-nomad) with role [nomad] vault_role for tasks")
    boot.set_defaults(func=_bootstrap)

    add = sub.add_parser("agent-add", help="create or update one agent's AppRole role and entity (its pools)")
    add.add_argument("agent_id")
    add.add_argument("--pools", required=True, help="comma list of pools (task queues) the agent may serve")
    add.add_argument("--role-id-file", required=True, help="where to write the role id")
    add.add_argument("--secret-id-file", help="also mint a secret id into this file (mode 0600)")
    add.add_argument("--wrap-ttl", help="write a response-wrapped secret id valid this long (e.g. 10m)")
    add.set_defaults(func=_agent_add)

    sid = sub.add_parser("secret-id", help="mint a new secret id for an agent (or 'server') into a file")
    sid.add_argument("agent_id", help="agent id, or 'server' for the leoflow-server role")
    sid.add_argument("--secret-id-file", required=True)
    sid.add_argument("--role-id-file", help="also write the role id here")
    sid.add_argument("--wrap-ttl", help="write a response-wrapped secret id valid this long")
    sid.set_defaults(func=_secret_id)

    revoke = sub.add_parser("revoke", help="destroy every secret id of an agent (a lost host)")
    revoke.add_argument("agent_id")
    revoke.set_defaults(func=_revoke)

    rotate = sub.add_parser("rotate-key", help="rotate the OIDC key signing agent identity tokens now")
    rotate.set_defaults(func=_rotate)


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from leoflow.config import ConfigError, load
    from leoflow.secrets.bootstrap import BootstrapSettings
    from leoflow.secrets.vault import VaultError, make_client

    try:
        config = load(getattr(args, "config", None))
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    addr = args.addr or config.vault.addr
    if not addr:
        raise CliError("no Vault address: pass --addr or set config key vault.addr")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CliError(f"--token-file {args.token_file}: {exc.strerror or exc}") from exc
    else:
        token = os.environ.get("VAULT_TOKEN", "").strip()
    if not token:
        raise CliError("no operator token: pass --token-file or set VAULT_TOKEN (~/.vault-token is not read)")
    try:
        client = make_client(addr, token=token, ca_file=config.vault.ca_file)
    except VaultError as exc:
        raise CliError(str(exc)) from exc
    overrides: dict[str, Any] = {}
    if getattr(args, "pki", False):
        overrides["pki"] = True
    if getattr(args, "issuer", None):
        overrides["issuer"] = args.issuer.rstrip("/")
    if getattr(args, "identity_ttl", None):
        overrides["identity_ttl"] = args.identity_ttl
    if getattr(args, "nomad_jwks_url", None):
        overrides["nomad_jwks_url"] = args.nomad_jwks_url
        overrides["nomad_role"] = config.nomad.vault_role or "leoflow-task"
    return config, client, BootstrapSettings.from_config(config.vault, **overrides)


def _write_private(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, target)


def _run(fn: Any) -> Any:
    from leoflow.secrets.vault import VaultError

    try:
        return fn()
    except VaultError as exc:
        raise CliError(str(exc)) from exc


def _bootstrap(args: argparse.Namespace) -> int:
    from leoflow.secrets import bootstrap

    _config, client, settings = _setup(args)
    report = _run(lambda: bootstrap.bootstrap(client, settings))
    for change in report.changes:
        print(change)
    print("vault is ready for Leoflow" + ("" if report.changed else " (nothing changed)"))
    return 0


def _agent_add(args: argparse.Namespace) -> int:
    from leoflow.secrets import bootstrap

    _config, client, settings = _setup(args)
    report = bootstrap.Report()
    pools = [p for p in args.pools.split(",") if p.strip()]
    role_id = _run(lambda: bootstrap.add_agent(client, settings, args.agent_id, pools, report))
    _write_private(args.role_id_file, role_id)
    for change in report.changes:
        print(change)
    print(f"role id of agent {args.agent_id} written to {args.role_id_file}")
    if args.secret_id_file:
        role = bootstrap.agent_role_name(args.agent_id)
        secret = _run(lambda: bootstrap.new_secret_id(client, settings, role, wrap_ttl=args.wrap_ttl))
        _write_private(args.secret_id_file, secret)
        kind = f"wrapped secret id (valid {args.wrap_ttl}, single use)" if args.wrap_ttl else "secret id"
        print(f"{kind} written to {args.secret_id_file}")
    return 0


def _secret_id(args: argparse.Namespace) -> int:
    from leoflow.secrets import bootstrap

    _config, client, settings = _setup(args)
    role = bootstrap.SERVER_ROLE if args.agent_id == "server" else bootstrap.agent_role_name(args.agent_id)
    secret = _run(lambda: bootstrap.new_secret_id(client, settings, role, wrap_ttl=args.wrap_ttl))
    _write_private(args.secret_id_file, secret)
    print(f"secret id for {role} written to {args.secret_id_file}")
    if args.role_id_file:
        _write_private(args.role_id_file, _run(lambda: bootstrap.role_id(client, settings, role)))
        print(f"role id for {role} written to {args.role_id_file}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from leoflow.secrets import bootstrap

    _config, client, settings = _setup(args)
    count = _run(lambda: bootstrap.revoke_secret_ids(client, settings, bootstrap.agent_role_name(args.agent_id)))
    print(f"destroyed {count} secret id(s) of agent {args.agent_id}; its next login is refused")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from leoflow.secrets import bootstrap

    _config, client, settings = _setup(args)
    _run(lambda: bootstrap.rotate_signing_key(client, settings))
    print(f"rotated identity/oidc/key/{settings.oidc_key}; agentrpc follows on the next unknown kid")
    return 0
