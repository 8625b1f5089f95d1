"""Entry point of `leoflow-server` (filled in by the API work; prints help meanwhile)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leoflow-server",
        description="Serve Airflow 3's /api/v2, the /ui API and the Airflow UI bundle (gunicorn + Falcon), "
        "plus the gRPC endpoint agents dial.",
    )
    parser.add_argument("--config", help="TOML config file (default: $LEOFLOW_CONFIG)")
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
