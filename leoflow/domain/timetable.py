"""When scheduled runs are due and which data interval each covers, as Airflow 3 decides it.

Airflow 3 turns a cron string or preset into ``CronTriggerTimetable`` and a duration into
``DeltaTriggerTimetable`` (``create_cron_data_intervals``/``create_delta_data_intervals`` default
to False since 3.0): a run is due *at* its schedule point, and its data interval is the point
itself (start == end == logical date == run_after). ``@once`` runs once at ``start_date``.
Catchup (default False in Airflow 3) decides whether missed points are backfilled one by one or
only the latest one runs.

Everything here is a function of the DAG, the last automated run's interval and ``now``, with no
state of its own, so a freshly elected scheduler recomputes the same next run that its
predecessor would have created, and run ids (which embed the point) make creation idempotent.
Cron is evaluated in the DAG's timezone, with Airflow's DST fix for expressions whose hour is
not fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, FormatException, MissingFieldException
from croniter import croniter

from leoflow.domain.dag import DAG
from leoflow.domain.schedule import Schedule, ScheduleError, parse_schedule
from leoflow.domain.states import DagRunType


class TimetableError(ValueError):
    pass


@dataclass(frozen=True)
class DataInterval:
    start: datetime
    end: datetime

    @classmethod
    def exact(cls, at: datetime) -> DataInterval:
        return cls(at, at)


@dataclass(frozen=True)
class DagRunInfo:
    """One scheduled run: when it may start and the data interval it covers."""

    run_after: datetime
    data_interval: DataInterval

    @property
    def logical_date(self) -> datetime:
        return self.data_interval.start


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimetableError(f"timezone: unknown timezone {name!r}") from exc


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise TimetableError(f"naive datetime {dt.isoformat()} (every time must carry a timezone)")
    return dt.astimezone(UTC)


class _Cron:
    """Airflow's ``CronMixin`` arithmetic: next/previous points of a cron expression in a zone."""

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        self.expression = expression
        self.tz = tz
        hour_field = expression.split()[1]
        # Airflow fixes DST only when the hour is not a fixed list of numbers ("*", "*/2", "1-5/2").
        self.fix_dst = any(ch in hour_field for ch in "*/-")

    def _naive(self, current: datetime) -> datetime:
        return current.astimezone(self.tz).replace(tzinfo=None)

    def _aware(self, naive: datetime) -> datetime:
        return naive.replace(tzinfo=self.tz).astimezone(UTC)

    def next(self, current: datetime) -> datetime:
        naive = self._naive(current)
        scheduled = croniter(self.expression, start_time=naive).get_next(datetime)
        if not self.fix_dst:
            return self._aware(scheduled)
        return _utc(current) + (scheduled - naive)

    def prev(self, current: datetime) -> datetime:
        naive = self._naive(current)
        scheduled = croniter(self.expression, start_time=naive).get_prev(datetime)
        if not self.fix_dst:
            return self._aware(scheduled)
        return _utc(current) - (naive - scheduled)

    def align_to_next(self, current: datetime) -> datetime:
        nxt = self.next(current)
        return nxt if self.prev(nxt) != current else current

    def align_to_prev(self, current: datetime) -> datetime:
        prv = self.prev(current)
        return prv if self.next(prv) != current else current


class _Delta:
    """Airflow's ``DeltaMixin``: every instant is aligned; points are ``delta`` apart."""

    def __init__(self, delta: timedelta) -> None:
        self.delta = delta

    def next(self, current: datetime) -> datetime:
        return current + self.delta

    def prev(self, current: datetime) -> datetime:
        return current - self.delta

    def align_to_next(self, current: datetime) -> datetime:
        return current

    def align_to_prev(self, current: datetime) -> datetime:
        return current


def _first_run(arith: _Cron | _Delta, now: datetime) -> datetime:
    """``_calc_first_run`` with ``run_immediately=False``: the past point if it is within 10% (>= 5 min)."""
    past = arith.align_to_prev(now)
    upcoming = arith.align_to_next(now)
    buffer = max((upcoming - past) / 10, timedelta(minutes=5))
    return past if now - past <= buffer else upcoming


def schedule_of(dag: DAG) -> Schedule:
    return parse_schedule(dag.schedule)


def next_dagrun_info(
    dag: DAG,
    *,
    last_automated: DataInterval | None,
    now: datetime,
    schedule: Schedule | None = None,
) -> DagRunInfo | None:
    """The next scheduled run after ``last_automated`` (None: none yet), or None if there is none.

    ``run_after`` may be in the past (a run that is due now) or in the future (the next wake-up).
    """
    schedule = schedule or schedule_of(dag)
    now = _utc(now)
    earliest = _utc(dag.start_date) if dag.start_date else None
    latest = _utc(dag.end_date) if dag.end_date else None
    if schedule.kind == "none":
        return None
    if schedule.kind == "once":
        if last_automated is not None or earliest is None:
            return None
        if latest is not None and earliest > latest:
            return None
        return DagRunInfo(earliest, DataInterval.exact(earliest))
    arith: _Cron | _Delta
    if schedule.kind == "duration":
        assert schedule.interval is not None
        arith = _Delta(schedule.interval)
    else:
        assert schedule.cron is not None
        arith = _Cron(schedule.cron, _zone(dag.timezone))
    if dag.catchup:
        if last_automated is not None:
            start = arith.next(_utc(last_automated.end))
        elif earliest is None:
            start = _first_run(arith, now)
        else:
            start = arith.align_to_next(earliest)
    else:
        candidates = [arith.align_to_prev(now)]
        if last_automated is not None:
            candidates.append(arith.next(_utc(last_automated.end)))
        elif earliest is None:
            candidates.append(_first_run(arith, now))
        if earliest is not None:
            candidates.append(arith.align_to_next(earliest))
        start = max(candidates)
    if latest is not None and latest < start:
        return None
    return DagRunInfo(start, DataInterval.exact(start))


def due_runs(
    dag: DAG,
    *,
    last_automated: DataInterval | None,
    now: datetime,
    limit: int,
) -> tuple[list[DagRunInfo], DagRunInfo | None]:
    """Runs due at ``now`` (at most ``limit``, oldest first) and the first one not yet due.

    With catchup every missed point is returned (capped by ``limit`` per call, the rest come on
    the next call); without it only the latest point is.
    """
    schedule = schedule_of(dag)
    due: list[DagRunInfo] = []
    last = last_automated
    info = next_dagrun_info(dag, last_automated=last, now=now, schedule=schedule)
    while info is not None and info.run_after <= now and len(due) < limit:
        due.append(info)
        last = info.data_interval
        info = next_dagrun_info(dag, last_automated=last, now=now, schedule=schedule)
    return due, info


def infer_manual_data_interval(dag: DAG, run_after: datetime) -> DataInterval:
    """A manual run's data interval: the point itself for every trigger-style timetable."""
    return DataInterval.exact(_utc(run_after))


def generate_run_id(run_type: DagRunType, run_after: datetime) -> str:
    """Airflow 3's ``Timetable.generate_run_id``: ``<type>__<run_after in ISO 8601>``."""
    return f"{run_type.value}__{_utc(run_after).isoformat()}"


@dataclass(frozen=True)
class Description:
    """What the UI shows for a schedule: Airflow's ``timetable_summary``/``timetable_description``.

    ``summary`` is the timetable's ``summary`` as the API returns it (Airflow's ``DAGResponse``
    turns the null timetable's "None" into ``null``; the UI reads ``null`` as "no schedule");
    ``description`` is the timetable's ``description``; ``periodic`` its ``periodic`` flag.
    """

    summary: str | None
    description: str | None
    periodic: bool


def describe(schedule_text: str | None) -> Description:
    """Airflow 3's words for a schedule, one function for every endpoint that shows them.

    Cron strings and presets become ``CronTriggerTimetable``: the summary is the expression with
    the preset expanded (``@daily`` -> ``0 0 * * *``), the description cron-descriptor's sentence
    in 24-hour time (``At 00:00``), as ``CronMixin`` words it. Durations become
    ``DeltaTriggerTimetable``: summary ``str(timedelta)``, no description. A schedule Leoflow
    cannot parse (the DAG loader rejects those; only old stored data could hold one) is shown as
    written, without a description.
    """
    try:
        parsed = parse_schedule(schedule_text)
    except ScheduleError:
        return Description(schedule_text, None, False)
    if parsed.kind == "none":
        return Description(None, "Never, external triggers only", False)
    if parsed.kind == "once":
        return Description("@once", "Once, as soon as possible", False)
    if parsed.kind == "duration" and parsed.interval is not None:
        return Description(str(parsed.interval), "", True)
    expression = parsed.cron or ""
    return Description(expression, describe_cron(expression), True)


def describe_cron(expression: str) -> str:
    """``CronMixin._describe_with_dom_dow_fix``: day-of-month and day-of-week both set mean OR."""
    fields = expression.split()
    try:
        if len(fields) == 5 and fields[2] != "*" and fields[4] != "*":
            by_day = _sentence(" ".join([*fields[:4], "*"]))
            by_weekday = _sentence(" ".join([*fields[:2], "*", fields[3], fields[4]]))
            return f"{by_day} (or) {by_weekday}"
        return _sentence(expression)
    except (FormatException, MissingFieldException):
        return ""


def _sentence(expression: str) -> str:
    descriptor = ExpressionDescriptor(expression, casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True)
    return str(descriptor.get_description())
