"""Following a DAG run until it ends: a live progress line for people, plain lines for logs.

On a TTY the line is redrawn in place (``\\r`` + erase); otherwise a line is printed only when the
counts change, so a CI log shows each transition once. Progress goes to stderr: stdout keeps the
final result (a table, or JSON/YAML for scripts).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from leoflow.cli.client import ApiClient, seg
from leoflow.cli.errors import CliError
from leoflow.cli.output import paint, state_colour

FINISHED_RUN = ("success", "failed")
DONE = ("success", "skipped")
FAILED = ("failed", "upstream_failed")
RUNNING = ("running", "restarting")
QUEUED = ("queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass(frozen=True)
class Counts:
    total: int
    done: int
    running: int
    queued: int
    failed: int

    @property
    def waiting(self) -> int:
        return self.total - self.done - self.running - self.queued - self.failed


def count(states: Iterable[str | None]) -> Counts:
    c = Counter(s or "none" for s in states)
    total = sum(c.values())
    return Counts(total, sum(c[s] for s in DONE), sum(c[s] for s in RUNNING), sum(c[s] for s in QUEUED),
                  sum(c[s] for s in FAILED))


def describe(state: str, counts: Counts, elapsed: float, stream: TextIO) -> str:
    parts = [
        f"{counts.done}/{counts.total} done",
        paint(f"{counts.running} running", "36" if counts.running else None, stream),
        f"{counts.queued} queued",
        paint(f"{counts.failed} failed", "31" if counts.failed else None, stream),
        f"{counts.waiting} waiting",
    ]
    return f"{paint(state, state_colour(state), stream)}  " + " · ".join(parts) + f"  {elapsed:.1f}s"


def task_instances(client: ApiClient, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{seg(dag_id)}/dagRuns/{seg(run_id)}/taskInstances"
    return list(client.paginate(path, "task_instances"))


def follow_run(client: ApiClient, dag_id: str, run_id: str, *, interval: float = 0.5,
               timeout: float | None = None, stream: TextIO | None = None,
               clock: Callable[[], float] = time.monotonic) -> tuple[Mapping[str, Any], list[dict[str, Any]]]:
    """Poll the run and its task instances until the run ends; returns the final (run, tis)."""
    stream = stream or sys.stderr
    live = bool(getattr(stream, "isatty", lambda: False)())
    started = clock()
    last_plain = ""
    tick = 0
    run_path = f"/api/v2/dags/{seg(dag_id)}/dagRuns/{seg(run_id)}"
    try:
        while True:
            run = client.get(run_path)
            tis = task_instances(client, dag_id, run_id)
            state = str(run.get("state"))
            counts = count(t.get("state") for t in tis)
            elapsed = clock() - started
            text = describe(state, counts, elapsed, stream)
            if live:
                tick += 1
                stream.write(f"\r\033[K{SPINNER[tick % len(SPINNER)]} {run_id}  {text}")
                stream.flush()
            else:
                plain = describe(state, counts, 0, stream).rsplit("  ", 1)[0]
                if plain != last_plain:
                    stream.write(f"{run_id}  {text}\n")
                    stream.flush()
                    last_plain = plain
            if state in FINISHED_RUN:
                return run, tis
            if timeout is not None and elapsed >= timeout:
                raise CliError(f"run {run_id} of {dag_id} still {state} after {timeout:g}s (--wait-timeout); "
                               f"it goes on: follow it with `leoflow runs show {dag_id} {run_id}`")
            time.sleep(interval)
    finally:
        if live:
            stream.write("\r\033[K")
            stream.flush()
