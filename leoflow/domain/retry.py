"""When a failed try may run again: Airflow's ``TaskInstance.next_retry_datetime``, bit for bit.

Airflow's exponential backoff is ``retry_delay * 2 ** (try_number - 1)`` rounded up to whole
seconds, plus a jitter in ``[0, that)`` drawn from a SHA-1 of
``"{dag_id}#{task_id}#{logical_date}#{try_number}"``. Hashing rather than ``random`` makes the
delay the same in every process that computes it (scheduler, API, a restarted leader), which is
what lets us store ``next_retry_at`` once and show the same value the UI would compute.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from leoflow.domain.dag import Task

# Airflow's MAX_RETRY_DELAY: one day, applied before max_retry_delay.
MAX_RETRY_DELAY_SECONDS = 24 * 60 * 60
BACKOFF_MULTIPLIER = 2.0


def retry_delay(
    task: Task,
    *,
    dag_id: str,
    try_number: int,
    logical_date: datetime | None,
) -> timedelta:
    """The pause after try ``try_number`` failed, before the next try may be scheduled."""
    delay = task.retry_delay
    if not task.retry_exponential_backoff:
        return delay
    try:
        min_backoff = math.ceil(delay.total_seconds() * (BACKOFF_MULTIPLIER ** (try_number - 1)))
    except OverflowError:
        min_backoff = MAX_RETRY_DELAY_SECONDS
    min_backoff = max(min_backoff, 1)
    # Airflow formats the datetime with str(), e.g. "2026-01-01 00:00:00+00:00" (or "None").
    seed = f"{dag_id}#{task.task_id}#{logical_date}#{try_number}".encode()
    ti_hash = int(hashlib.sha1(seed, usedforsecurity=False).hexdigest(), 16)
    modded_hash = min_backoff + ti_hash % min_backoff
    backoff = timedelta(seconds=min(modded_hash, MAX_RETRY_DELAY_SECONDS))
    if task.max_retry_delay:
        backoff = min(task.max_retry_delay, backoff)
    return backoff


def next_retry_at(
    task: Task,
    *,
    dag_id: str,
    try_number: int,
    logical_date: datetime | None,
    end_date: datetime,
) -> datetime:
    """``end_date`` of the failed try plus its retry delay; a retry is due once ``now`` passes it."""
    return end_date + retry_delay(task, dag_id=dag_id, try_number=try_number, logical_date=logical_date)


def can_retry(task: Task, *, try_number: int, max_tries: int) -> bool:
    """Airflow's ``is_eligible_to_retry``: the task has retries and ``max_tries`` is not exhausted.

    ``max_tries`` is ``retries`` for a fresh task instance and ``try_number + retries`` after a
    clear, so a cleared task gets its full retry budget again.
    """
    return bool(task.retries) and try_number <= max_tries
