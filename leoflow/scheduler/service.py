"""The scheduler process: leader election, what wakes the loop, and a clean stop.

Nothing ticks. The loop sleeps until one of these says there is work:

* a blocking query on the active runs (a run triggered, cleared, finished), on the DAG states
  (a new version, a pause toggled) or on the nudge key (a task instance marked in a running run);
* the executor's events (a try started or ended), pumped by a thread that asks for the next
  events only after the loop has written the previous ones (the executor acknowledges a batch
  when asked for the next, so an event is never lost to a crash);
* the earliest due time the last wake-up computed (a retry, a timeout, a scheduled run).

A long failsafe wait (``max_idle``) bounds the damage of a watch that silently stalls; it is not a
tick. Only the leader works; a standby waits on the election. Losing the lock (a failed fence, a
lost session) stops all work at once and waits to be elected again, which starts with
``recover``.

A wake-up that fails is retried with exponential backoff from 0.5 s, up to 5 s after a store
error and 30 s after anything else (a bug, or a corrupt record, does not heal by retrying at
once): one log line per attempt instead of two a second, and the first good wake-up resets it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from leoflow.executors.port import Executor
from leoflow.scheduler.loop import Options, Scheduler, WakeStats
from leoflow.scheduler.metrics import SchedulerMetrics
from leoflow.scheduler.signals import leader_key, nudge_key
from leoflow.store.election import LeaderElector, NotLeader
from leoflow.store.port import StoreError
from leoflow.store.repos import Repositories
from leoflow.store.repos.errors import Fenced
from leoflow.store.watching import Watcher

log = logging.getLogger("leoflow.scheduler")


class Waker:
    """Collects wake-up reasons from any thread; the loop waits on it with a deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: set[str] = set()

    def wake(self, reason: str) -> None:
        with self._cond:
            self._reasons.add(reason)
            self._cond.notify_all()

    def wait(self, timeout: float) -> set[str]:
        with self._cond:
            if not self._reasons:
                self._cond.wait(max(0.0, timeout))
            reasons, self._reasons = self._reasons, set()
        return reasons or {"timer"}


class SchedulerService:
    def __init__(
        self,
        repos: Repositories,
        executor: Executor,
        *,
        root: str = "leoflow",
        leader_ttl: float = 15.0,
        lock_delay: float = 5.0,
        options: Options | None = None,
        metrics: SchedulerMetrics | None = None,
        max_idle: float = 60.0,
        watch_wait: float = 10.0,
        max_backoff: float = 30.0,
        identity: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repos = repos
        self.executor = executor
        self.root = root
        self.metrics = metrics or SchedulerMetrics()
        self.waker = Waker()
        self.max_idle = max_idle
        self.watch_wait = watch_wait
        self.max_backoff = max_backoff
        self.failures = 0  # consecutive failed wake-ups; sets the backoff, reset by a good one
        self.clock = clock
        self.elector = LeaderElector(
            repos.store, leader_key(root), ttl=leader_ttl, lock_delay=lock_delay, identity=identity,
            on_elected=lambda _fence: self.waker.wake("elected"), on_lost=lambda _why: self.waker.wake("lost"),
        )
        self.scheduler = Scheduler(repos, executor, fence=self.elector.fence, metrics=self.metrics,
                                   options=options, clock=clock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch_threads: list[threading.Thread] = []
        self._recovered = False
        self.last_stats: WakeStats | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SchedulerService:
        self.elector.start()
        watched = [
            ("store", self.repos.runs.active_prefix(), True),
            ("dags", f"{self.root}/dags/state/", True),
            ("nudge", nudge_key(self.root), False),
        ]
        for name, key, recurse in watched:
            thread = threading.Thread(target=self._watch, args=(name, key, recurse), name=f"watch-{name}",
                                      daemon=True)
            thread.start()
            self._watch_threads.append(thread)
        self._spawn("executor-events", self._pump)
        self._spawn("scheduler-loop", self._loop)
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop working and, when graceful, release leadership so a standby takes over at once.

        The watch threads are not waited for: each ends when its blocking query returns (within
        ``watch_wait``); ``join`` waits for them too (tests do, before closing the store).
        """
        self._stop.set()
        self.waker.wake("stop")
        for thread in self._threads:
            thread.join(timeout)
        self.elector.stop(graceful=graceful)
        self.metrics.is_leader.set(0)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._watch_threads:
            thread.join(self.watch_wait + 1.0 if timeout is None else timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ---- threads ---------------------------------------------------------------------------------
    def _watch(self, name: str, key: str, recurse: bool) -> None:
        watcher = Watcher(self.repos.store, key, recurse=recurse, wait=self.watch_wait)
        first = True
        while not self._stop.is_set():
            try:
                result = watcher.next(stop=self._stop)
            except StoreError as exc:
                self.metrics.store_errors.labels(op="watch").inc()
                log.warning("watch failed; retrying", extra={"watch": name, "error": str(exc)})
                self._stop.wait(1.0)
                continue
            if result is not None and not first and self.elector.is_leader:
                self.waker.wake(name)
            first = False

    def _pump(self) -> None:
        """Move executor events into the loop; ask for more only after the loop wrote these."""
        while not self._stop.is_set():
            if not self.elector.is_leader or not self._recovered:
                self._stop.wait(0.05)
                continue
            try:
                events = list(self.executor.events(0.5))
            except Exception as exc:
                self.metrics.store_errors.labels(op="executor_events").inc()
                log.warning("reading executor events failed", extra={"error": str(exc)})
                self._stop.wait(0.5)
                continue
            if not events:
                continue
            generation = self.scheduler.add_events(events)
            self.waker.wake("executor")
            # Ask for more (which acknowledges these) only once these are written; if they never
            # are (store down, leadership lost) the executor delivers them again later.
            while not self.scheduler.wait_written(generation, 1.0):
                if self._stop.is_set():
                    return
                if not self.elector.is_leader:
                    break  # the events stay in the inbox; the top of the loop waits for leadership

    def _loop(self) -> None:
        next_wake: datetime | None = None
        while not self._stop.is_set():
            if not self.elector.is_leader:
                self.metrics.is_leader.set(0)
                self._recovered = False
                self.elector.elected.wait(0.2)
                continue
            self.metrics.is_leader.set(1)
            try:
                if not self._recovered:
                    self.scheduler.recover()
                    self._recovered = True
                    reasons = {"elected"}
                else:
                    timeout = self.max_idle
                    if next_wake is not None:
                        timeout = min(timeout, max(0.0, (next_wake - self.clock()).total_seconds()))
                    reasons = self.waker.wait(timeout)
                    if self._stop.is_set():
                        break
                    reasons.discard("lost")
                    reasons.discard("stop")
                    if not self.elector.is_leader:
                        continue
                stats = self.scheduler.wake_up(reasons or {"timer"})
                self.last_stats = stats
                next_wake = stats.next_wake
                self.failures = 0
            except (NotLeader, Fenced) as exc:
                log.warning("leadership lost mid wake-up; standing by", extra={"error": str(exc)})
                self._recovered = False
            except StoreError as exc:
                delay = self._backoff(min(5.0, self.max_backoff))
                log.warning("store error in a wake-up; retrying", extra={"error": str(exc), "retry_in": delay,
                                                                        "failures": self.failures})
                self._retry_after(delay)
            except Exception:  # the loop must not die; the failure is logged with its traceback
                delay = self._backoff(self.max_backoff)
                log.exception("wake-up failed", extra={"retry_in": delay, "failures": self.failures})
                self.metrics.store_errors.labels(op="wakeup_bug").inc()
                self._retry_after(delay)

    def _backoff(self, cap: float) -> float:
        """Count one more failed wake-up; the wait before the next: 0.5 s doubling up to ``cap``."""
        self.failures += 1
        return min(0.5 * 2 ** min(self.failures - 1, 16), cap)

    def _retry_after(self, delay: float) -> None:
        self._stop.wait(delay)
        self.waker.wake("retry")
