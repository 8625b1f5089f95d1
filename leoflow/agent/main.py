"""Entry point of `leoflow-agent` (filled in by the agent work; prints help meanwhile)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leoflow-agent",
        description="Run Leoflow task tries on this host: dial the server over gRPC, authenticate with a "
        "Vault-issued token, execute commands or containers, stream logs and results.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
