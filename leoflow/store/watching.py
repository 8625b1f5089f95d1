"""Watch loops that follow Consul's blocking-query client rules, for any ``Store``.

A single ``Store.watch`` call is one blocking query; a *loop* of them must (Consul's
"Blocking Queries" docs, research/hashicorp.md §2.1):

1. reset the index to 0 when the returned index is lower than the one sent (snapshot restore, or
   the newest entry of a prefix deleted after its tombstone was reaped): the next query then
   returns the full current state at once;
2. keep the index >= 1 (0 would turn the next query into a non-blocking read, a busy loop);
3. rate-limit the loop (a token bucket, burst 2), because a return is not a guarantee of change
   (spurious wake-ups, idempotent writes) and a tight loop would hammer the servers.

``Watcher.next`` hides all three and returns only when the index moved, so callers see changes,
not wake-ups. Store outages back off exponentially (capped) instead of failing the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from leoflow.store.port import Store, StoreUnavailable, WatchResult


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int = 2, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        delay = (1 - self._tokens) / self.rate
        self._sleep(delay)
        self._last = self._clock()
        self._tokens = 0.0
        return delay


def next_index(previous: int, returned: int) -> int:
    """The index to send next, per rules 1 and 2 above."""
    if returned < previous:
        return 0
    return max(returned, 1)


class Watcher:
    """Follows one key (or prefix with ``recurse``) and yields its state each time it changes."""

    def __init__(
        self,
        store: Store,
        key: str,
        *,
        recurse: bool = False,
        wait: float = 30.0,
        rate: float = 20.0,
        burst: int = 2,
        max_backoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self.recurse = recurse
        self.wait = wait
        self.index = 0
        self.resets = 0
        self._limiter = RateLimiter(rate, burst, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._max_backoff = max_backoff

    def next(self, timeout: float | None = None, stop: threading.Event | None = None) -> WatchResult | None:
        """Block until the watched data changes (first call: returns the current state at once).

        Returns None when ``timeout`` elapses or ``stop`` is set first.
        """
        deadline = None if timeout is None else self._clock() + timeout
        backoff = 0.05
        while stop is None or not stop.is_set():
            remaining = self.wait if deadline is None else min(self.wait, deadline - self._clock())
            if remaining <= 0:
                return None
            self._limiter.acquire()
            sent = self.index
            try:
                result = self.store.watch(self.key, index=sent, wait=remaining, recurse=self.recurse)
            except StoreUnavailable:
                pause = backoff if deadline is None else min(backoff, max(0.0, deadline - self._clock()))
                if stop is not None:
                    stop.wait(pause)
                else:
                    self._sleep(pause)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.05
            self.index = next_index(sent, result.index)
            if self.index == 0:
                self.resets += 1
                continue  # went backwards: re-read everything now
            if sent == 0 or result.index != sent:
                return result
        return None
