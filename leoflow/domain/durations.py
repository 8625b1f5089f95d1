"""Durations as DAG authors write them: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or integer seconds.

One parser for every duration field (``retry_delay``, ``execution_timeout``, ``dagrun_timeout``,
duration schedules) so the same spelling means the same thing everywhere, and one formatter so the
canonical serialized form and the CLI print them back the way they were written.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PATTERN = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")

EXPECTED = 'a duration like "30s", "5m", "1h30m" or a number of seconds'


class DurationError(ValueError):
    pass


def parse_duration(value: object) -> timedelta:
    """Parse a duration; numbers are seconds. Negative values and empty strings are errors."""
    if isinstance(value, bool):
        raise DurationError(f"expected {EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError(f"expected {EXPECTED}, got a negative number {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise DurationError(f"expected {EXPECTED}, got a negative duration")
        return value
    if not isinstance(value, str):
        raise DurationError(f"expected {EXPECTED}, got {type(value).__name__}")
    text = value.strip()
    match = _PATTERN.match(text) if text else None
    if match is None or not any(match.groupdict().values()):
        raise DurationError(f"expected {EXPECTED}, got {value!r}")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0),
                     seconds=parts.get("s", 0))


def format_duration(delta: timedelta) -> str:
    """The shortest canonical spelling (``"1h30m"``); sub-second parts fall back to seconds."""
    if delta.microseconds:
        return f"{delta.total_seconds()}s"
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)
