"""Following one store prefix from a daemon thread: what the in-process projections share.

The run projection (``projection.py``) and the prefix mirrors (``mirror.py``: the DAG list, users,
revoked tokens, favorites) keep a decoded copy of a prefix fresh the same way: a blocking query
``wait`` seconds at a time,
rate-limited to one round per ``min_interval``, retried with backoff when the store fails, and
stopped promptly so the store can be closed. They differ only in how they index what a round
returns, which each implements as ``_apply``. Local writes are merged the same way too: a
listing taken before this process's own write never reverts it (``_keep_local_writes``).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from leoflow.store.port import Entry, Store, StoreError

log = logging.getLogger(__name__)

V = TypeVar("V")


class PrefixFollower(ABC):
    def __init__(self, store: Store, prefix: str, *, name: str, wait: float, min_interval: float) -> None:
        self.store = store
        self.prefix = prefix
        self.name = name
        self.wait = wait
        self.min_interval = min_interval
        self._local: dict[str, tuple[int, Any]] = {}  # key -> (index written at, value | None = deleted)
        self._index = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.errors = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Any:
        """Load synchronously (so the first read is complete), then follow changes in a daemon thread."""
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"leoflow-{self.name}", daemon=True)
            self._thread.start()
        return self

    def signal_stop(self) -> None:
        """Ask the watch thread to end without waiting: stop many followers in one ``wait``."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """End the watch thread and wait until it has left the store (its query returns within
        ``wait``), so closing the store afterwards is safe."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.wait + 5.0 if timeout is None else timeout)
            if not self._thread.is_alive():
                self._thread = None

    @property
    def index(self) -> int:
        return self._index

    @property
    def generation(self) -> int:
        """Bumps on every change: callers may key derived data (sorted lists, shaped rows) on it."""
        return self._generation

    def refresh(self, wait: float = 0.0) -> None:
        """One round: a blocking query from the current index (``wait=0``: return at once)."""
        index = self._index if wait > 0 else 0
        result = self.store.watch(self.prefix, index=index, wait=wait, recurse=True)
        self._apply(result.index, result.entries)

    @abstractmethod
    def _apply(self, index: int, entries: Iterable[Entry]) -> None:
        """Index one round's entries (the whole prefix as of ``index``); each follower its own way."""

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.refresh(wait=self.wait)
                backoff = 0.1
            except StoreError as exc:
                if self._stop.is_set():
                    return
                self.errors += 1
                log.warning("%s: watch failed, retrying", self.name, extra={"error": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            spent = time.monotonic() - started
            if spent < self.min_interval:
                self._stop.wait(self.min_interval - spent)

    # ---- shared by _apply and the local-write paths ----------------------------------------------
    def _keep_local_writes(self, fresh: dict[str, V], index: int, as_item: Callable[[int, Any], V]) -> None:
        """Under the lock: re-apply this process's writes newer than the listing at ``index``."""
        for key, (at, local) in list(self._local.items()):
            if at > index:  # the listing predates our own write: keep what we wrote
                if local is None:
                    fresh.pop(key, None)
                else:
                    fresh[key] = as_item(at, local)
            else:
                del self._local[key]

    def _round_done(self, index: int) -> None:
        """Under the lock: record that a round at ``index`` is applied and wake ``wait_for``."""
        self._index = max(index, 1)
        self.refreshes += 1
        self._changed.notify_all()

    def wait_for(self, index: int, timeout: float = 2.0) -> bool:
        """Block until the follower reflects store index ``index`` (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._index < index:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


def stop_all(followers: Iterable[PrefixFollower]) -> None:
    """Ask every follower to stop, then wait for each: closing takes one ``wait``, not one per follower."""
    followers = list(followers)
    for follower in followers:
        follower.signal_stop()
    for follower in followers:
        follower.stop()
