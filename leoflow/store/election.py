"""Leader election on a session lock, HashiCorp's recipe hardened (research/hashicorp.md §2.4).

* The session is **TTL-only** (no serfHealth check), ``behavior="release"``, with a lock-delay,
  so a crashed leader's lock frees itself after at most 2 x TTL and nobody may take it for
  ``lock_delay`` more: time for the old leader's in-flight work to fail its fence.
* The leader **renews at TTL/2**. A renew answering "gone" (404 / False) means leadership is lost
  *at once*: ``on_lost`` runs before anything else. If renewals cannot reach the store for a whole
  TTL the leader also steps down on its own, because the server may expire the session any time
  after TTL and the leader cannot know.
* Every candidate watches the lock key with blocking queries; followers try to acquire when the
  holder is gone (a ``False`` during lock-delay is retried shortly).
* **Graceful stepdown releases first, then destroys** the session: a release imposes no
  lock-delay, so the successor takes over at once; destroying first would delay it.
* Leadership only *gates* work; correctness comes from **fencing** (``leoflow.store.fence``): each
  leader-only write is one txn that starts with ``CheckSession(key, session)``, so a leader that
  was deposed while frozen (SIGSTOP, GC pause, partition) cannot land anything.

Run exactly one elector per scheduler process (never one per gunicorn worker).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from leoflow.store.fence import Fence, NotLeader, fenced
from leoflow.store.port import SessionInvalid, Store, StoreError, StoreUnavailable
from leoflow.store.watching import RateLimiter, next_index

__all__ = ["Fence", "LeaderElector", "LeaderInfo", "NotLeader", "fenced", "read_leader"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderInfo:
    """Who holds the lock now (the value the leader wrote when it acquired it)."""

    id: str
    host: str
    pid: int
    started_at: float  # wall-clock seconds when this holder acquired the lock
    session: str
    lock_index: int  # with key and session: Consul's "sequencer" for this leadership term


def read_leader(store: Store, key: str) -> LeaderInfo | None:
    """The current leader, or None when the lock is free. A held lock proves a live session: the
    store frees it within 2 x TTL of the holder's last renewal, so this doubles as liveness."""
    entry = store.get(key)
    if entry is None or not entry.session:
        return None
    try:
        data = json.loads(entry.value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    return LeaderInfo(
        id=str(data.get("id", "")), host=str(data.get("host", "")), pid=int(data.get("pid", 0) or 0),
        started_at=float(data.get("started_at", 0.0) or 0.0), session=entry.session, lock_index=entry.lock_index,
    )


class LeaderElector:
    """Contends for ``key``; ``is_leader``/``fence()`` tell the caller whether it may act as leader.

    Callbacks run on the elector's thread: ``on_elected(fence)`` after the lock is won,
    ``on_lost(reason)`` the moment leadership is lost or given up. ``elected``/``lost`` Events
    mirror them for code that prefers waiting. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        key: str,
        *,
        ttl: float = 15.0,
        lock_delay: float = 5.0,
        identity: str | None = None,
        on_elected: Callable[[Fence], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        watch_rate: float = 20.0,
    ) -> None:
        self.store = store
        self.key = key
        self.ttl = ttl
        self.lock_delay = lock_delay
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.on_elected = on_elected
        self.on_lost = on_lost
        self._clock = clock
        self._wall = wall_clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._limiter = RateLimiter(watch_rate, 2, clock=clock, sleep=lambda s: self._sleep(s))
        self._lock = threading.Lock()
        self._session: str | None = None
        self._leading = False
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None
        self.elected = threading.Event()
        self.lost = threading.Event()
        self.terms = 0

    # -- public ------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leading

    @property
    def session(self) -> str | None:
        return self._session

    def fence(self) -> Fence:
        """The fence for leader-only writes; raises NotLeader when not leading right now."""
        with self._lock:
            if not self._leading or self._session is None:
                raise NotLeader(f"{self.identity} does not hold leader lock {self.key!r}")
            return Fence(self.key, self._session)

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self.run, name=f"elector-{self.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop contending. Graceful: release the lock (no lock-delay for the successor), then
        destroy the session. Not graceful: just stop renewing (the store expires it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if graceful:
            self._resign()
        else:
            self._demote("stopped without stepping down (the session will expire)")

    def wait_elected(self, timeout: float) -> bool:
        return self.elected.wait(timeout)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        index = 0
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._session is None:
                    self._session = self.store.session_create(
                        name=f"leoflow-leader {self.identity}", ttl=self.ttl, behavior="release",
                        lock_delay=self.lock_delay,
                    )
                    self._last_renew = self._clock()
                index = self._step(index)
                backoff = 0.05
            except StoreUnavailable as exc:
                log.warning("leader election: store unavailable: %s", exc)
                self._check_silence()
                self._sleep(backoff)
                backoff = min(backoff * 2, max(self.ttl / 4, 0.05))
            except SessionInvalid:
                self._demote("session invalid")
                self._session = None
            except StoreError as exc:  # a bug or misconfiguration: say so, keep trying slowly
                log.error("leader election: %s", exc)
                self._check_silence()
                self._sleep(min(self.ttl / 2, 1.0))

    def _step(self, index: int) -> int:
        """One pass: renew if due, acquire if free, then block on the key until something to do."""
        assert self._session is not None
        now = self._clock()
        if now - self._last_renew >= self.ttl / 2:
            if not self.store.session_renew(self._session):
                self._demote("session expired or destroyed (renew returned not found)")
                self._session = None
                return 0
            self._last_renew = self._clock()
        entry = self.store.get(self.key)
        holder = entry.session if entry else None
        if holder == self._session:
            self._promote()
        else:
            if self.is_leader:
                self._demote(f"lock {self.key!r} now held by {holder or 'nobody'}")
            if holder is None:
                value = json.dumps({"id": self.identity, "host": socket.gethostname(), "pid": os.getpid(),
                                    "started_at": self._wall()}).encode()
                if self.store.put(self.key, value, acquire=self._session):
                    self._promote()
                else:  # most likely lock-delay after the previous holder's session ended
                    self._sleep(max(0.02, min(0.25, self.lock_delay / 10)))
                    return index
        until_renew = self.ttl / 2 - (self._clock() - self._last_renew)
        if until_renew <= 0:
            return index
        self._limiter.acquire()
        sent = entry.modify_index if entry is not None else index
        # Bounded wait so stop() is prompt even with a long TTL (costs one query per second).
        result = self.store.watch(self.key, index=sent, wait=min(until_renew, 1.0))
        return next_index(sent, result.index)

    def _check_silence(self) -> None:
        """Renewals failing for a whole TTL: the server may already have expired us; step down."""
        if self.is_leader and self._clock() - self._last_renew >= self.ttl:
            self._demote("could not renew the session for a whole TTL")

    def _promote(self) -> None:
        with self._lock:
            if self._leading:
                return
            self._leading = True
            session = self._session
        assert session is not None
        self.terms += 1
        self.lost.clear()
        self.elected.set()
        log.info("elected leader for %s (session %s)", self.key, session)
        if self.on_elected is not None:
            self.on_elected(Fence(self.key, session))

    def _demote(self, reason: str) -> None:
        with self._lock:
            if not self._leading:
                return
            self._leading = False
        self.elected.clear()
        self.lost.set()
        log.warning("lost leadership of %s: %s", self.key, reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def _resign(self) -> None:
        session = self._session
        was_leader = self.is_leader
        self._demote("stepping down")
        if session is None:
            return
        try:
            if was_leader:
                entry = self.store.get(self.key)
                if entry is not None and entry.session == session:
                    self.store.put(self.key, entry.value, release=session)  # first: no lock-delay
            self.store.session_destroy(session)
        except StoreError as exc:
            log.warning("leader stepdown incomplete (the session will expire on its own): %s", exc)
        self._session = None
