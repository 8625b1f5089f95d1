"""Task logs kept as one NDJSON file per try under a shared directory.

Logs never go into the KV store (Consul is a coordination store, not a log sink). The directory is
local in standalone and a shared volume in production. Each line is one JSON object in the shape
the Airflow UI reads: ``{"timestamp": ..., "level": ..., "event": ...}`` plus optional fields.
Writers append whole lines under an exclusive file lock, so concurrent appenders (an agent stream
and the Nomad log copier) never interleave partial lines.

Readers continue from a *byte* offset (always the start of a line), so following a growing log
costs only the new bytes, never a rescan from line 0; reading is a generator with a line limit,
so one request never holds a whole log in memory. A line that is not a JSON object (a disk that
was full mid-write, a hand edit) is shown as its raw text instead of breaking every later read.

Paths: every id becomes one segment with ``leoflow.store.keys.encode_id`` (``.`` is escaped, so
no id can be ``..``), and the result is checked to lie under the root before any file is touched.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leoflow.executors.port import TryKey
from leoflow.store.keys import encode_id
from leoflow.store.port import InvalidKey

# What one ``read`` returns at most unless the caller asks otherwise.
DEFAULT_LIMIT = 10_000
_BLOCK = 64 * 1024


class LogPathError(ValueError):
    """A try key that cannot name a log file under the root (an empty id, a path escape)."""


@dataclass(frozen=True)
class LogLine:
    record: Mapping[str, Any]
    end: int  # byte offset just past this line: where a reader continues


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[Mapping[str, Any], ...]
    next_offset: int  # byte offset to pass back to continue after these lines


def parse_line(raw: bytes) -> Mapping[str, Any]:
    """One stored line; anything that is not a JSON object is kept as its text, never an error."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"event": raw.decode("utf-8", "replace").rstrip("\r\n"), "level": "info"}


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: TryKey) -> Path:
        """The one file of a try; writers and readers all go through here."""
        try:
            parts = [encode_id(key.dag_id), encode_id(key.run_id), encode_id(key.task_id)]
        except InvalidKey as exc:
            raise LogPathError(f"cannot name a log file for {key}: {exc}") from exc
        path = self.root.joinpath(*parts, str(int(key.map_index)), f"{int(key.try_number)}.ndjson")
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):
            raise LogPathError(f"log path for {key} escapes the log directory {root}")
        return path

    def append(self, key: TryKey, lines: Iterable[Mapping[str, Any]]) -> None:
        payload = "".join(json.dumps(line, default=str, separators=(",", ":")) + "\n" for line in lines)
        if not payload:
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, payload.encode())
        finally:
            os.close(fd)

    def exists(self, key: TryKey) -> bool:
        return self.path(key).exists()

    def size(self, key: TryKey) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return 0

    def is_line_start(self, key: TryKey, offset: int) -> bool:
        """Whether ``offset`` is where a line begins (0, or just after a newline): a valid resume point."""
        if offset == 0:
            return True
        try:
            with self.path(key).open("rb") as fh:
                fh.seek(offset - 1)
                return fh.read(1) == b"\n"
        except FileNotFoundError:
            return False

    def iter_lines(self, key: TryKey, offset: int = 0, *, limit: int | None = None,
                   end: int | None = None) -> Iterator[LogLine]:
        """Complete lines from byte ``offset`` on, at most ``limit`` of them, none starting at or past ``end``.

        An unfinished trailing line (a writer mid-append) is left for the next read.
        """
        if limit is not None and limit <= 0:
            return
        try:
            fh = self.path(key).open("rb")
        except FileNotFoundError:
            return
        with fh:
            fh.seek(offset)
            pos = offset
            count = 0
            while end is None or pos < end:
                raw = fh.readline()
                if not raw.endswith(b"\n"):
                    return
                pos += len(raw)
                yield LogLine(parse_line(raw), pos)
                count += 1
                if limit is not None and count >= limit:
                    return

    def read(self, key: TryKey, offset: int = 0, limit: int | None = DEFAULT_LIMIT) -> LogChunk:
        """At most ``limit`` lines from byte ``offset``; ``next_offset`` continues after them."""
        out: list[Mapping[str, Any]] = []
        next_offset = offset
        for line in self.iter_lines(key, offset, limit=limit):
            out.append(line.record)
            next_offset = line.end
        return LogChunk(tuple(out), next_offset)

    def complete_end(self, key: TryKey) -> int:
        """Byte offset just past the last complete line: a snapshot a streaming reader stops at."""
        try:
            fh = self.path(key).open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            size = os.fstat(fh.fileno()).st_size
            pos = size
            while pos > 0:
                start = max(0, pos - _BLOCK)
                fh.seek(start)
                block = fh.read(pos - start)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                pos = start
            return 0

    def count_lines(self, key: TryKey) -> int:
        """Complete lines in the file, counted in blocks without parsing them."""
        try:
            fh = self.path(key).open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(_BLOCK), b""))
