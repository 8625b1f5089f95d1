"""Task log routes; the implementation lives in ``leoflow.api.logs`` (the architecture's place for it)."""

from __future__ import annotations

from leoflow.api.logs import register

__all__ = ["register"]
