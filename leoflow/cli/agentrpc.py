"""`leoflow agentrpc`: the gRPC endpoint agents dial (its own process, adr/0040)."""

from __future__ import annotations

import argparse

from leoflow import config as config_mod
from leoflow.cli.errors import CliError
from leoflow.observe.logging import configure


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "agentrpc",
        help="serve the gRPC endpoint that leoflow-agent dials",
        description="Serve leoflow.agent.v1.AgentService and the gRPC health service: agents register, "
        "receive tries from the store's pool queues, and stream back results and logs.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.add_argument("--bind", help="host:port to listen on (default: [server] grpc_bind)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from leoflow.agentrpc.server import ServerSetupError, serve
    from leoflow.store.factory import open_store
    from leoflow.store.port import StoreError

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        raise CliError(str(exc)) from exc
    configure("agentrpc", cfg.logging.level)
    try:
        store = open_store(cfg)
    except StoreError as exc:
        raise CliError(f"cannot open the store: {exc}") from exc
    if cfg.server.grpc_metrics_bind:
        host, _, port = cfg.server.grpc_metrics_bind.rpartition(":")
        try:
            start_http_server(int(port), addr=host or "127.0.0.1")
        except (OSError, ValueError) as exc:
            raise CliError(f"config key server.grpc_metrics_bind={cfg.server.grpc_metrics_bind}: {exc}") from exc
    try:
        return serve(cfg, store, bind=args.bind)
    except ServerSetupError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
