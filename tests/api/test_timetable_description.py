"""One wording of a DAG's schedule everywhere, Airflow 3.3.2's (``CronMixin``, ``DeltaMixin``, ``NullTimetable``).

The expected strings are what Airflow's timetables produce: the cron description comes from
cron-descriptor in 24-hour sentence case (Airflow's own dependency and settings), presets are
expanded in the summary, a duration's summary is ``str(timedelta)`` with an empty description.
"""

from __future__ import annotations

import pytest

from leoflow.domain.timetable import Description, describe
from tests.api.runs_helpers import get_ok

CASES = [
    (None, Description(None, "Never, external triggers only", False)),
    ("@once", Description("@once", "Once, as soon as possible", False)),
    ("@daily", Description("0 0 * * *", "At 00:00", True)),
    ("@hourly", Description("0 * * * *", "Every hour", True)),
    ("0 * * * *", Description("0 * * * *", "Every hour", True)),
    ("@weekly", Description("0 0 * * 0", "At 00:00, only on Sunday", True)),
    ("30 21 * * 5", Description("30 21 * * 5", "At 21:30, only on Friday", True)),
    ("*/5 * * * *", Description("*/5 * * * *", "Every 5 minutes", True)),
    # Airflow's DOM+DOW fix: both restricted means either day matches.
    ("0 0 1 * 1", Description("0 0 1 * 1", "At 00:00, on day 1 of the month (or) At 00:00, only on Monday", True)),
    ("1h", Description("1:00:00", "", True)),
    ("1d", Description("1 day, 0:00:00", "", True)),
]


@pytest.mark.parametrize(("schedule", "expected"), CASES, ids=[str(s) for s, _ in CASES])
def test_describe_words_schedules_as_airflow(schedule, expected):
    assert describe(schedule) == expected


@pytest.mark.parametrize("schedule", ["@daily", "0 * * * *", "1h", None])
def test_public_and_ui_dag_lists_agree(api, client, schedule):
    api.seed_dag("d", schedule=schedule)
    public = get_ok(client, "/api/v2/dags/d")
    ui = next(d for d in get_ok(client, "/ui/dags")["dags"] if d["dag_id"] == "d")
    expected = describe(schedule)
    for doc in (public, ui):
        assert (doc["timetable_summary"], doc["timetable_description"], doc["timetable_periodic"]) == (
            expected.summary, expected.description, expected.periodic)
