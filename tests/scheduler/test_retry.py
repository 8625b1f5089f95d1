"""Airflow's next_retry_datetime: fixed delay, exponential backoff with its SHA-1 jitter, the caps."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from leoflow.domain.dag import Task
from leoflow.domain.retry import MAX_RETRY_DELAY_SECONDS, can_retry, next_retry_at, retry_delay

LD = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_fixed_delay() -> None:
    task = Task("t", retry_delay=timedelta(seconds=42))
    for n in (1, 2, 7):
        got = next_retry_at(task, dag_id="d", try_number=n, logical_date=LD, end_date=END)
        assert got == END + timedelta(seconds=42)


@pytest.mark.parametrize("try_number", [1, 2, 3, 4, 5])
def test_backoff_matches_airflow_formula(try_number: int) -> None:
    task = Task("t", retry_delay=timedelta(seconds=10), retry_exponential_backoff=True)
    # Airflow: min_backoff = ceil(delay * 2 ** (try - 1)); + sha1("dag#task#<str(logical_date)>#try") % min_backoff
    min_backoff = 10 * 2 ** (try_number - 1)
    seed = f"d#t#2026-01-01 00:00:00+00:00#{try_number}".encode()
    jitter = int(hashlib.sha1(seed).hexdigest(), 16) % min_backoff  # noqa: S324 (Airflow's formula)
    got = retry_delay(task, dag_id="d", try_number=try_number, logical_date=LD)
    assert got == timedelta(seconds=min_backoff + jitter)
    assert timedelta(seconds=min_backoff) <= got < timedelta(seconds=2 * min_backoff)


def test_backoff_is_deterministic_and_depends_on_identity() -> None:
    task = Task("t", retry_delay=timedelta(seconds=100), retry_exponential_backoff=True)
    a = retry_delay(task, dag_id="d", try_number=3, logical_date=LD)
    assert a == retry_delay(task, dag_id="d", try_number=3, logical_date=LD)
    others = {retry_delay(task, dag_id=f"d{i}", try_number=3, logical_date=LD) for i in range(20)}
    assert len(others) > 1


def test_zero_delay_backoff_has_a_one_second_floor() -> None:
    task = Task("t", retry_delay=timedelta(0), retry_exponential_backoff=True)
    assert retry_delay(task, dag_id="d", try_number=1, logical_date=None) == timedelta(seconds=1)


def test_caps() -> None:
    capped = Task("t", retry_delay=timedelta(seconds=60), retry_exponential_backoff=True,
                  max_retry_delay=timedelta(seconds=90))
    assert retry_delay(capped, dag_id="d", try_number=5, logical_date=LD) == timedelta(seconds=90)
    huge = Task("t", retry_delay=timedelta(hours=1), retry_exponential_backoff=True)
    assert retry_delay(huge, dag_id="d", try_number=60, logical_date=LD) == timedelta(seconds=MAX_RETRY_DELAY_SECONDS)
    # max_retry_delay does not apply without backoff (Airflow applies it only in the backoff branch).
    plain = Task("t", retry_delay=timedelta(seconds=300), max_retry_delay=timedelta(seconds=10))
    assert retry_delay(plain, dag_id="d", try_number=1, logical_date=LD) == timedelta(seconds=300)


@pytest.mark.parametrize(("retries", "try_number", "max_tries", "expected"), [
    (0, 1, 0, False),
    (1, 1, 1, True),
    (1, 2, 1, False),
    (3, 3, 3, True),
    (3, 4, 3, False),
    (2, 4, 6, True),  # after a clear: max_tries = try_number + retries
])
def test_can_retry(retries: int, try_number: int, max_tries: int, expected: bool) -> None:
    assert can_retry(Task("t", retries=retries), try_number=try_number, max_tries=max_tries) is expected
