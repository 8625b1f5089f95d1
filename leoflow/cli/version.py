"""`leoflow version`."""

from __future__ import annotations

import argparse

import leoflow


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the Leoflow version")
    p.set_defaults(func=lambda _args: print(leoflow.__version__) or 0)
