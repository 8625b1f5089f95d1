"""Rendering for people and for scripts: ``table`` (sized to the terminal, coloured on a TTY),
``json`` and ``yaml`` (the API's own field names, complete, never truncated or coloured).

Tables are only cut to the terminal's width when there *is* a terminal (or ``COLUMNS`` is set):
a table piped into ``grep`` keeps whole values. Colour needs a TTY and no ``NO_COLOR``
(https://no-color.org) and a terminal that is not ``dumb``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import yaml

MIN_COL = 5
ELLIPSIS = "…"

STATE_COLOURS = {
    "success": "32", "failed": "31", "upstream_failed": "33", "running": "36", "queued": "90",
    "scheduled": "90", "up_for_retry": "33", "up_for_reschedule": "36", "skipped": "35", "removed": "90",
    "restarting": "35", "deferred": "35",
}


def use_colour(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, code: str | None, stream: TextIO | None = None) -> str:
    if not code or not use_colour(stream):
        return text
    return f"\033[{code}m{text}\033[0m"


def state_colour(state: object) -> str | None:
    return STATE_COLOURS.get(str(state)) if state is not None else None


def terminal_width() -> int | None:
    """The width to fit, or None when output goes to a pipe or file (keep values whole)."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    return None


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:Z|\+00:00)$")


def cell(value: Any) -> str:
    if isinstance(value, str):
        match = _ISO.match(value)  # UTC instants, shortened for people (json/yaml keep them whole)
        return f"{match.group(1)} {match.group(2)}" if match else value.replace("\n", " ")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value).replace("\n", " ")


@dataclass(frozen=True)
class Column:
    header: str
    get: Callable[[Mapping[str, Any]], Any]
    colour: Callable[[Any], str | None] | None = None


def col(header: str, key: str | Callable[[Mapping[str, Any]], Any],
        colour: Callable[[Any], str | None] | None = None) -> Column:
    getter = key if callable(key) else (lambda row, k=key: row.get(k))
    return Column(header, getter, colour)


def fit(widths: list[int], total: int, sep: int = 2) -> list[int]:
    """Widths that fit ``total`` characters: shrink the widest column, again and again, never below
    MIN_COL; if that is not enough, drop columns from the right (tables put the key columns first)."""
    widths = list(widths)

    def size(ws: list[int]) -> int:
        return sum(ws) + sep * (len(ws) - 1)

    while size(widths) > total:
        candidates = [i for i in range(len(widths)) if widths[i] > MIN_COL]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    while len(widths) > 1 and size(widths) > total:
        widths.pop()
    return widths


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[cell(c.get(r)) for c in columns] for r in rows]
    headers = [c.header for c in columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    total = terminal_width()
    if total is not None:
        widths = fit(widths, total)
    columns = columns[: len(widths)]
    headers = headers[: len(widths)]
    cells = [row[: len(widths)] for row in cells]
    last = len(columns) - 1

    def line(values: list[str], colours: list[str | None]) -> str:
        parts = []
        for i, (value, width) in enumerate(zip(values, widths, strict=False)):
            text = _clip(value, width)
            padded = text if i == last else text.ljust(width)
            parts.append(paint(padded, colours[i], out) if colours[i] else padded)
        return "  ".join(parts).rstrip()

    print(line(headers, ["1"] * len(headers)), file=out)
    for raw, row in zip(rows, cells, strict=True):
        colours = [c.colour(c.get(raw)) if c.colour else None for c in columns]
        print(line(row, colours), file=out)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump(data: Any, fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "yaml":
        out.write(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True, default_flow_style=False))
    else:
        out.write(json.dumps(_plain(data), indent=2, default=str) + "\n")


def emit(data: Any, fmt: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column],
         out: TextIO | None = None) -> None:
    """``data`` (the API's shape) for json/yaml; ``rows`` through ``columns`` for a table."""
    if fmt in ("json", "yaml"):
        dump(data, fmt, out)
    else:
        table(rows, columns, out)


def details(item: Mapping[str, Any], fmt: str, fields: Iterable[str] | None = None,
            colours: Mapping[str, Callable[[Any], str | None]] | None = None, out: TextIO | None = None) -> None:
    """One record: ``key  value`` lines for people, the whole object for scripts."""
    out = out or sys.stdout
    if fmt in ("json", "yaml"):
        dump(item, fmt, out)
        return
    keys = list(fields) if fields is not None else list(item)
    width = max((len(k) for k in keys), default=0)
    total = terminal_width()
    for key in keys:
        value = cell(item.get(key))
        if total is not None:
            value = _clip(value, max(MIN_COL, total - width - 2))
        colour = (colours or {}).get(key)
        shown = paint(value, colour(item.get(key)), out) if colour else value
        print(f"{key.ljust(width)}  {shown}".rstrip(), file=out)


def note(message: str) -> None:
    """Human commentary goes to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr)
