"""What a DAG's ``schedule`` says, parsed once and validated: cron, preset, duration, once or none.

The scheduler's timetable (``leoflow.domain.timetable``) computes data intervals from a
``Schedule``; this module only decides what the text means, so a bad schedule is an error at
parse time (with the file position) instead of a surprise in the scheduler loop.

Stable API: ``parse_schedule(text) -> Schedule`` and the ``Schedule`` fields below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from croniter import croniter

from leoflow.domain.durations import DurationError, format_duration, parse_duration

ScheduleKind = Literal["cron", "preset", "duration", "once", "none"]

# Airflow's presets and the cron expression each stands for (``@once`` has none).
PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
ONCE = "@once"

EXPECTED = (
    "expected a cron expression with 5 fields, one of @once, @hourly, @daily, @weekly, @monthly, @yearly, "
    'a duration like "30m" or "1h30m", or null'
)


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule.

    * ``kind="cron"``: ``cron`` holds the 5-field expression (as written, whitespace normalized).
    * ``kind="preset"``: ``text`` is the preset (``@daily``), ``cron`` its expression.
    * ``kind="duration"``: ``interval`` is the positive period between runs.
    * ``kind="once"``: one run at ``start_date``. ``kind="none"``: manual/API triggers only.

    ``text`` is the canonical spelling that the serialized DAG stores (None for ``none``).
    """

    kind: ScheduleKind
    text: str | None = None
    cron: str | None = None
    interval: timedelta | None = None

    @property
    def is_periodic(self) -> bool:
        """True when the scheduler creates runs repeatedly (cron, preset, duration)."""
        return self.kind in ("cron", "preset", "duration")


NO_SCHEDULE = Schedule(kind="none")


def parse_schedule(text: str | None) -> Schedule:
    """Parse a schedule string; ``None`` means "no schedule". Raises ScheduleError naming the text."""
    if text is None:
        return NO_SCHEDULE
    if not isinstance(text, str):
        raise ScheduleError(f"invalid schedule {text!r}: {EXPECTED}")
    raw = text.strip()
    if not raw:
        raise ScheduleError(f"invalid schedule {text!r}: {EXPECTED}")
    if raw.startswith("@"):
        lowered = raw.lower()
        if lowered == ONCE:
            return Schedule(kind="once", text=ONCE)
        if lowered in PRESETS:
            return Schedule(kind="preset", text=lowered, cron=PRESETS[lowered])
        raise ScheduleError(f"invalid schedule {text!r}: {EXPECTED}")
    if raw[0].isdigit() and " " not in raw and raw[-1] in "dhms":
        try:
            interval = parse_duration(raw)
        except DurationError as exc:
            raise ScheduleError(f"invalid schedule {text!r}: {EXPECTED}") from exc
        if interval <= timedelta(0):
            raise ScheduleError(f"invalid schedule {text!r}: a duration schedule must be longer than 0s")
        return Schedule(kind="duration", text=format_duration(interval), interval=interval)
    fields = raw.split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise ScheduleError(f"invalid schedule {text!r}: {EXPECTED}")
    expr = " ".join(fields)
    return Schedule(kind="cron", text=expr, cron=expr)
