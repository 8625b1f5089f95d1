"""Task logs kept as one NDJSON file per try under a shared directory.

Logs never go into the KV store (Consul is a coordination store, not a log sink). The directory is
local in standalone and a shared volume in production. Each line is one JSON object in the shape
the Airflow UI reads: ``{"timestamp": ..., "level": ..., "event": ...}`` plus optional fields.
Writers append whole lines under an exclusive file lock, so concurrent appenders (an agent stream
and the Nomad log copier) never interleave partial lines; readers take offsets in lines.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from leoflow.executors.port import TryKey


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[Mapping[str, Any], ...]
    next_offset: int  # pass back to continue after these lines


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: TryKey) -> Path:
        def part(s: str) -> str:
            return quote(s, safe="")

        return (
            self.root
            / part(key.dag_id)
            / part(key.run_id)
            / part(key.task_id)
            / str(key.map_index)
            / f"{key.try_number}.ndjson"
        )

    def append(self, key: TryKey, lines: Iterable[Mapping[str, Any]]) -> None:
        payload = "".join(json.dumps(line, default=str, separators=(",", ":")) + "\n" for line in lines)
        if not payload:
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, payload.encode())
        finally:
            os.close(fd)

    def exists(self, key: TryKey) -> bool:
        return self.path(key).exists()

    def read(self, key: TryKey, offset: int = 0, limit: int | None = None) -> LogChunk:
        """Lines from ``offset`` (a line number); an unfinished trailing line is left for the next read."""
        path = self.path(key)
        if not path.exists():
            return LogChunk((), offset)
        out: list[Mapping[str, Any]] = []
        n = 0
        with path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                if n >= offset and (limit is None or len(out) < limit):
                    out.append(json.loads(raw))
                n += 1
                if limit is not None and len(out) >= limit:
                    break
        return LogChunk(tuple(out), offset + len(out))
