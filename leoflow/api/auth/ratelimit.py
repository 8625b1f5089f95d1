"""Login throttling: failed attempts per client address in a fixed one-minute window.

Only failures consume the budget, so a user who types the right password is never locked out by
their own successful logins. The counter is per process (per gunicorn worker): with W workers an
attacker gets at most W times the limit, which still bounds guessing; the figure is documented.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime


class LoginRateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], datetime]) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window start minute, failures)

    def _minute(self) -> int:
        return int(self._clock().timestamp() // 60)

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it is not blocked."""
        if self.per_minute <= 0:
            return None
        with self._lock:
            minute = self._minute()
            window = self._windows.get(key)
            if window is None or window[0] != minute or window[1] < self.per_minute:
                return None
        return max(1, 60 - int(self._clock().timestamp()) % 60)

    def failure(self, key: str) -> None:
        with self._lock:
            minute = self._minute()
            start, count = self._windows.get(key, (minute, 0))
            if start != minute:
                start, count = minute, 0
            self._windows[key] = (start, count + 1)
            if len(self._windows) > 10_000:  # bound memory under a spray of addresses
                for stale in [k for k, (m, _) in self._windows.items() if m != minute]:
                    del self._windows[stale]
