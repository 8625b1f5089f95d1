"""The executor port: submit a try, cancel it, receive its events.

The scheduler decides *what* runs; an executor only carries a fully rendered try to some runtime
and reports what happened to it. Every event names the try it belongs to (``TryKey`` includes the
``try_number``), so the scheduler can drop a late report from an older try.

Contract:
* ``submit`` is idempotent per ``TryKey``: submitting the same try twice never runs it twice.
* ``cancel`` is idempotent and never raises for an unknown or finished try.
* ``events`` yields events in the order they happened for each try; a try gets exactly one
  terminal event (SUCCESS, FAILED or LOST), possibly after a restart of the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from leoflow.domain.dag import Resources
from leoflow.domain.planning import TryId

# Which try of which task instance: the planner's own identity, so decisions (cancels) and
# executor events name a try with one type and need no conversion.
TryKey = TryId


@dataclass(frozen=True)
class TryRequest:
    """One try, rendered: templating is done, secrets are references, not values."""

    key: TryKey
    command: tuple[str, ...]
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    queue: str = "default"
    resources: Resources = field(default_factory=Resources)
    timeout_seconds: float | None = None
    driver: str = "docker"
    connections: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    priority_weight: int = 1


class TryOutcome(StrEnum):
    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"
    # The infrastructure lost the try (node gone, agent lost, allocation lost): retried without
    # consuming the user's retries where the scheduler can tell.
    LOST = "lost"


@dataclass(frozen=True)
class TryEvent:
    key: TryKey
    outcome: TryOutcome
    at: datetime
    exit_code: int | None = None
    reason: str | None = None
    hostname: str | None = None
    executor_ref: str | None = None
    # A task's XCom return value (JSON text), when it wrote one.
    xcom_return: str | None = None

    @property
    def terminal(self) -> bool:
        return self.outcome is not TryOutcome.STARTED


class Executor(Protocol):
    name: str

    def submit(self, request: TryRequest) -> None: ...

    def cancel(self, key: TryKey, reason: str) -> None: ...

    def events(self, timeout: float) -> Iterator[TryEvent]:
        """Events that arrived since the last call; waits up to ``timeout`` seconds for the first."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Reconciling(Protocol):
    """An executor whose runtime keeps state outside the store (Nomad jobs) and can drift from it.

    The scheduler calls ``reconcile`` once on becoming leader, after resubmitting queued tries:
    work that no live try owns is stopped, and a live try whose work vanished gets a LOST event.
    The agents executor does not implement it: its queue lives in the store itself.
    """

    def reconcile(self, live_tries: Iterable[TryKey]) -> object: ...
