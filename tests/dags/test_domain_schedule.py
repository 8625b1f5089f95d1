from datetime import timedelta

import pytest

from leoflow.domain.durations import DurationError, format_duration, parse_duration
from leoflow.domain.schedule import EXPECTED, Schedule, ScheduleError, parse_schedule


@pytest.mark.parametrize(("text", "expected"), [
    (None, Schedule("none")),
    ("@once", Schedule("once", "@once")),
    ("@hourly", Schedule("preset", "@hourly", "0 * * * *")),
    ("@daily", Schedule("preset", "@daily", "0 0 * * *")),
    ("@weekly", Schedule("preset", "@weekly", "0 0 * * 0")),
    ("@monthly", Schedule("preset", "@monthly", "0 0 1 * *")),
    ("@yearly", Schedule("preset", "@yearly", "0 0 1 1 *")),
    ("@DAILY", Schedule("preset", "@daily", "0 0 * * *")),
    ("*/5 * * * *", Schedule("cron", "*/5 * * * *", "*/5 * * * *")),
    ("  0  6 * *   MON-FRI ", Schedule("cron", "0 6 * * MON-FRI", "0 6 * * MON-FRI")),
    ("30m", Schedule("duration", "30m", interval=timedelta(minutes=30))),
    ("1h30m", Schedule("duration", "1h30m", interval=timedelta(minutes=90))),
    ("90m", Schedule("duration", "1h30m", interval=timedelta(minutes=90))),
    ("2d", Schedule("duration", "2d", interval=timedelta(days=2))),
    ("45s", Schedule("duration", "45s", interval=timedelta(seconds=45))),
])
def test_parse_schedule_good(text: str | None, expected: Schedule) -> None:
    assert parse_schedule(text) == expected


def test_periodic_kinds() -> None:
    assert [parse_schedule(t).is_periodic for t in (None, "@once", "@daily", "0 * * * *", "5m")] == [
        False, False, True, True, True]


@pytest.mark.parametrize("text", ["", "  ", "@often", "@annually2", "* * * *", "61 * * * *", "* * * * * *",
                                  "1x", "5", "bogus", "0 0 32 * *"])
def test_parse_schedule_bad(text: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text)
    assert str(err.value) == f"invalid schedule {text!r}: {EXPECTED}"


def test_zero_duration_schedule() -> None:
    with pytest.raises(ScheduleError, match=r"^invalid schedule '0m': a duration schedule must be longer than 0s$"):
        parse_schedule("0m")


def test_non_string_schedule() -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d2h", 93600),
                                                (45, 45), (1.5, 1.5), (0, 0)])
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["", "5", "m", "1m1h", "-5s", -1, True, None, [1], "1.5m"])
def test_parse_duration_bad(value: object) -> None:
    with pytest.raises(DurationError, match='expected a duration like "30s", "5m", "1h30m" or a number of seconds'):
        parse_duration(value)


@pytest.mark.parametrize(("delta", "text"), [(timedelta(0), "0s"), (timedelta(seconds=90), "1m30s"),
                                             (timedelta(days=1, hours=1), "1d1h"),
                                             (timedelta(seconds=1.5), "1.5s")])
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
