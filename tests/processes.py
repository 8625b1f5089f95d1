"""Helpers for tests that start real processes and real stores."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Sequence
from typing import Any

from leoflow.store.port import Op, Store


def stop(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM (a graceful stop, as an operator would), then SIGKILL if it does not end in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class CountingStore:
    """A real store, with a count of the requests made through it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted

    def txn(self, ops: Sequence[Op]) -> Any:
        self.calls["txn"] += 1
        return self.inner.txn(ops)
