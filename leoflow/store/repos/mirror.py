"""In-process mirrors of small, hot prefixes: the DAG list (``dags/state/``), the import errors
(``dags/errors/``), and what every request's authentication reads (users, revoked tokens,
favorites; ADR 0059).

Why: the DAG list pages (``/api/v2/dags``, ``/ui/dags``) read every DAG entry on every request.
Listing and decoding 1,000 entries costs tens of milliseconds per request (more on Consul, and
it multiplies under concurrency since decoding holds the GIL), far over the 25 ms p99 target.
The API server instead keeps the decoded entries in memory and answers those reads with no
store request and no decoding (ADR 0014 covers deletion; the model is the run projection,
ADR 0026).

How it stays fresh: one daemon thread per mirrored prefix runs a blocking query (``wait``
seconds at a time) and re-decodes only the entries whose ``modify_index`` changed; wake-ups are
rate-limited to one per ``min_interval``. Only the small prefixes are mirrored (state entries,
import errors), never ``dags/blobs/`` (serialized DAGs and sources are immutable and cached by
content hash in the repository instead).

Read-your-writes: the repository reports every write it makes to a mirrored key (``observe``),
so this process's own pause/unpause, new version or delete shows at once; a listing taken before
a local write never reverts it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from leoflow.store.port import Entry, Store, StoreError
from leoflow.store.repos.follower import PrefixFollower

log = logging.getLogger(__name__)

T = TypeVar("T")


class PrefixMirror(PrefixFollower, Generic[T]):
    """Every entry under one prefix, decoded once per change, sorted by key."""

    def __init__(self, store: Store, prefix: str, decode: Callable[[Entry], T], *, name: str,
                 wait: float = 0.5, min_interval: float = 0.05) -> None:
        super().__init__(store, prefix, name=f"{name} mirror", wait=wait, min_interval=min_interval)
        self.decode = decode
        self._items: dict[str, tuple[int, T]] = {}  # key -> (modify_index, decoded)
        self._values: tuple[int, list[T]] = (-1, [])

    def _apply(self, index: int, entries: Iterable[Entry]) -> None:
        old = self._items
        fresh: dict[str, tuple[int, T]] = {}
        for e in entries:
            prev = old.get(e.key)
            if prev is not None and prev[0] == e.modify_index:
                fresh[e.key] = prev
                continue
            try:
                fresh[e.key] = (e.modify_index, self.decode(e))
            except StoreError as exc:
                log.error("%s: skipping undecodable entry", self.name, extra={"key": e.key, "error": str(exc)})
        with self._lock:
            self._keep_local_writes(fresh, index, lambda at, local: (at, local))
            current = self._items
            if len(fresh) != len(current) or any(current.get(k) is not v for k, v in fresh.items()):
                self._items = fresh
                self._generation += 1
            self._round_done(index)

    # ---- local writes ----------------------------------------------------------------------------
    def observe(self, key: str, index: int, value: T | None) -> None:
        """Apply a write this process just made (``value`` None: deleted at ``index``; 0 = unknown)."""
        with self._lock:
            current = self._items.get(key)
            if value is not None and current is not None and current[0] >= index:
                return  # the watch already brought this write (or a newer one)
            if value is None:
                if current is None:
                    return
                index = index or max(self._index, current[0]) + 1
            self._local[key] = (index, value)
            items = dict(self._items)
            if value is None:
                items.pop(key, None)
            else:
                items[key] = (index, value)
            self._items = items
            self._generation += 1

    # ---- reads -----------------------------------------------------------------------------------
    def values(self) -> list[T]:
        """Every decoded value in key order; the same list object until the next change (do not mutate)."""
        generation, cached = self._values
        now = self._generation  # read before the data: a racing change only makes the tag older
        if generation == now:
            return cached
        items = self._items
        ordered = [items[k][1] for k in sorted(items)]
        self._values = (now, ordered)
        return ordered

    def get(self, key: str) -> T | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None else None

    def __len__(self) -> int:
        return len(self._items)


class Mirrorable(ABC, Generic[T]):
    """A repository whose prefix the API server may keep in memory (users, revoked tokens, favorites).

    ``mirror`` starts the watch once, ``watchers`` hands its thread to ``Repositories.close``; the
    repository names what to mirror in ``_mirrored`` and reads ``_mirror`` when it is set.
    """

    store: Store
    _mirror: PrefixMirror[T] | None = None

    @abstractmethod
    def _mirrored(self) -> tuple[str, Callable[[Entry], T], str]:
        """(prefix, decode, name) of what ``mirror`` keeps."""

    def mirror(self, *, wait: float, min_interval: float = 0.05) -> PrefixMirror[T]:
        if self._mirror is None:
            prefix, decode, name = self._mirrored()
            self._mirror = PrefixMirror(self.store, prefix, decode, name=name, wait=wait,
                                        min_interval=min_interval).start()
        return self._mirror

    def watchers(self) -> list[PrefixFollower]:
        """The watch threads to stop before the store closes (``Repositories.close``)."""
        return [self._mirror] if self._mirror is not None else []
