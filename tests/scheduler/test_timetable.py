"""Airflow 3 trigger timetables: cron/presets/durations, start/end dates, timezone, catchup, @once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leoflow.domain.dag import DAG
from leoflow.domain.states import DagRunType
from leoflow.domain.timetable import (
    DataInterval,
    TimetableError,
    due_runs,
    generate_run_id,
    infer_manual_data_interval,
    next_dagrun_info,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def dag(schedule: str | None, **kw: object) -> DAG:
    return DAG("d", {}, schedule=schedule, **kw)  # type: ignore[arg-type]


NOW = utc(2026, 1, 10, 12, 30)


def test_catchup_backfills_every_missed_point_with_exact_intervals() -> None:
    d = dag("@daily", start_date=utc(2026, 1, 1), catchup=True)
    due, nxt = due_runs(d, last_automated=None, now=NOW, limit=100)
    assert [r.logical_date for r in due] == [utc(2026, 1, day) for day in range(1, 11)]
    assert all(r.data_interval == DataInterval(r.logical_date, r.logical_date) for r in due)
    assert all(r.run_after == r.logical_date for r in due)
    assert nxt is not None and nxt.run_after == utc(2026, 1, 11)


def test_catchup_is_capped_per_call_and_resumes() -> None:
    d = dag("0 * * * *", start_date=utc(2026, 1, 1), catchup=True)
    first, _ = due_runs(d, last_automated=None, now=NOW, limit=5)
    assert [r.logical_date.hour for r in first] == [0, 1, 2, 3, 4]
    second, _ = due_runs(d, last_automated=first[-1].data_interval, now=NOW, limit=5)
    assert second[0].logical_date == utc(2026, 1, 1, 5)


def test_no_catchup_runs_only_the_latest_point() -> None:
    d = dag("@daily", start_date=utc(2026, 1, 1), catchup=False)
    due, nxt = due_runs(d, last_automated=None, now=NOW, limit=100)
    assert [r.logical_date for r in due] == [utc(2026, 1, 10)]
    assert nxt is not None and nxt.logical_date == utc(2026, 1, 11)
    # After a long pause: the latest point again, not the backlog.
    due, _ = due_runs(d, last_automated=DataInterval.exact(utc(2026, 1, 3)), now=NOW, limit=100)
    assert [r.logical_date for r in due] == [utc(2026, 1, 10)]
    # Up to date: nothing due, next is tomorrow.
    due, nxt = due_runs(d, last_automated=DataInterval.exact(utc(2026, 1, 10)), now=NOW, limit=100)
    assert due == [] and nxt is not None and nxt.run_after == utc(2026, 1, 11)


def test_start_date_in_future_and_alignment() -> None:
    d = dag("0 6 * * *", start_date=utc(2026, 2, 1, 7), catchup=False)
    info = next_dagrun_info(d, last_automated=None, now=NOW)
    assert info is not None and info.run_after == utc(2026, 2, 2, 6)


def test_end_date_stops_scheduling() -> None:
    d = dag("@daily", start_date=utc(2026, 1, 1), end_date=utc(2026, 1, 3), catchup=True)
    due, nxt = due_runs(d, last_automated=None, now=NOW, limit=100)
    assert [r.logical_date.day for r in due] == [1, 2, 3]
    assert nxt is None


def test_timezone_and_dst() -> None:
    d = dag("0 2 * * *", timezone="Europe/Amsterdam", start_date=utc(2026, 3, 27), catchup=True)
    due, _ = due_runs(d, last_automated=None, now=utc(2026, 3, 31, 12), limit=100)
    # 02:00 local: CET (UTC+1) until 29 March, when 02:00 does not exist, then CEST (UTC+2).
    assert [r.logical_date for r in due] == [
        utc(2026, 3, 27, 1), utc(2026, 3, 28, 1), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0), utc(2026, 3, 31, 0),
    ]


def test_unknown_timezone_is_a_clear_error() -> None:
    with pytest.raises(TimetableError, match="Mars/Olympus"):
        next_dagrun_info(dag("@daily", timezone="Mars/Olympus", start_date=utc(2026, 1, 1)), last_automated=None,
                         now=NOW)


def test_duration_schedule() -> None:
    d = dag("6h", start_date=utc(2026, 1, 10), catchup=True)
    due, nxt = due_runs(d, last_automated=None, now=NOW, limit=100)
    assert [r.logical_date.hour for r in due] == [0, 6, 12]
    assert nxt is not None and nxt.run_after == utc(2026, 1, 10, 18)
    no_catchup = dag("6h", start_date=utc(2026, 1, 1), catchup=False)
    due, nxt = due_runs(no_catchup, last_automated=DataInterval.exact(utc(2026, 1, 10, 3)), now=NOW, limit=100)
    # Overdue: runs now (DeltaTriggerTimetable aligns nothing), then every 6h from there.
    assert [r.run_after for r in due] == [NOW]
    assert nxt is not None and nxt.run_after == NOW + timedelta(hours=6)


def test_once() -> None:
    d = dag("@once", start_date=utc(2026, 1, 5))
    due, nxt = due_runs(d, last_automated=None, now=NOW, limit=100)
    assert [r.logical_date for r in due] == [utc(2026, 1, 5)] and nxt is None
    assert next_dagrun_info(d, last_automated=DataInterval.exact(utc(2026, 1, 5)), now=NOW) is None
    assert next_dagrun_info(dag("@once"), last_automated=None, now=NOW) is None


def test_no_schedule() -> None:
    assert next_dagrun_info(dag(None, start_date=utc(2026, 1, 1)), last_automated=None, now=NOW) is None


def test_no_start_date_first_run_uses_the_recent_point_only_when_close() -> None:
    hourly = dag("0 * * * *", catchup=True)
    # 12:30 is 30 min after 12:00, more than max(6 min, 5 min): wait for 13:00.
    assert next_dagrun_info(hourly, last_automated=None, now=NOW).run_after == utc(2026, 1, 10, 13)  # type: ignore[union-attr]
    assert next_dagrun_info(hourly, last_automated=None, now=utc(2026, 1, 10, 12, 3)).run_after == utc(2026, 1, 10, 12)  # type: ignore[union-attr]


def test_run_ids_and_manual_interval() -> None:
    at = utc(2026, 1, 2, 3, 4, 5)
    assert generate_run_id(DagRunType.SCHEDULED, at) == "scheduled__2026-01-02T03:04:05+00:00"
    assert generate_run_id(DagRunType.MANUAL, at.replace(microsecond=123)) == "manual__2026-01-02T03:04:05.000123+00:00"
    assert infer_manual_data_interval(dag(None), at) == DataInterval(at, at)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(TimetableError, match="naive"):
        next_dagrun_info(dag("@daily", start_date=datetime(2026, 1, 1)), last_automated=None, now=NOW)
