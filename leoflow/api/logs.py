"""Task logs over HTTP: ``GET …/taskInstances/{task_id}/logs/{try_number}``.

Two shapes, as Airflow 3.3.2 serves them (``airflow-ui.md`` §4.5):

* ``Accept: application/x-ndjson`` (what the UI asks for): one JSON object per line, streamed
  from the log file; ``Airflow-Continuation-Token`` is set while the log may still grow.
* anything else: ``{"content": [...], "continuation_token": ...}`` (``TaskInstancesLogResponse``).

Following a running task: the continuation token is opaque to clients (the UI and the CLI pass it
back verbatim); it encodes the byte offset to resume from, so a poll reads only the new bytes and
never rescans the file. It is ``null`` once the try is over and every line has been read. A try
that has no log yet (queued, not started, or skipped) answers one "no logs yet" line (logger
``leoflow.logs``) instead of an error, so the UI's log view shows why it is empty.

Every line is made to satisfy ``StructuredLogMessage``: ``event`` is a string and ``timestamp``,
when present, an ISO string; agents write that shape already, this only guards odd lines.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.domain.states import FINISHED_TI_STATES, TaskInstanceState
from leoflow.executors.port import TryKey
from leoflow.logs.store import LogStore

NDJSON = "application/x-ndjson"
CHUNK_LINES = 1000
# A JSON (non-streamed) answer carries at most this many lines; the token continues from there.
MAX_JSON_LINES = 10_000
CONTINUATION_HEADER = "Airflow-Continuation-Token"
NO_LOGS_LOGGER = "leoflow.logs"  # the "no logs yet" line; the CLI recognises it by this logger
_OFFSET_PREFIX = "leoflow-log:"
_BAD_CONTINUATION = "Bad continuation token. Please use only the tokens provided by the API."


def make_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_OFFSET_PREFIX}{offset}".encode()).decode().rstrip("=")


def parse_token(raw: str | None) -> int:
    """The byte offset a token stands for; anything the API did not hand out is a 422."""
    if raw is None or raw == "":
        return 0
    if len(raw) > 64:
        raise problem.invalid("query.token", _BAD_CONTINUATION)
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise problem.invalid("query.token", _BAD_CONTINUATION) from None
    number = text.removeprefix(_OFFSET_PREFIX)
    if not text.startswith(_OFFSET_PREFIX) or not number.isdigit() or len(number) > 15:
        raise problem.invalid("query.token", _BAD_CONTINUATION)
    return int(number)


def normalize(line: Any) -> dict[str, Any]:
    if not isinstance(line, Mapping):
        return {"event": str(line)}
    out = dict(line)
    event = out.get("event")
    if not isinstance(event, str):
        out["event"] = "" if event is None else (event if isinstance(event, str) else json.dumps(event, default=str))
    if "timestamp" in out and not isinstance(out["timestamp"], str):
        out.pop("timestamp")
    return out


def try_is_over(ti_state: TaskInstanceState | None, current_try: int, try_number: int) -> bool:
    """A try's log is complete when a later try exists or the TI reached a state no try runs in."""
    if try_number < current_try:
        return True
    return ti_state in FINISHED_TI_STATES or ti_state in (
        TaskInstanceState.UP_FOR_RETRY,
        TaskInstanceState.UP_FOR_RESCHEDULE,
    )


def no_logs_line(task_id: str, try_number: int, state: TaskInstanceState | None, now: str | None) -> dict[str, Any]:
    if try_number <= 0 or state in (TaskInstanceState.SKIPPED, TaskInstanceState.UPSTREAM_FAILED, None):
        why = f"task {task_id!r} has not run (state: {state.value if state else 'no status'})"
    elif state in FINISHED_TI_STATES:
        why = f"try {try_number} of task {task_id!r} finished without writing a log line"
    else:
        why = f"try {try_number} of task {task_id!r} has not written a log line yet (state: {state.value})"
    line: dict[str, Any] = {"event": f"No logs available yet: {why}.", "level": "info", "logger": NO_LOGS_LOGGER}
    if now:
        line["timestamp"] = now
    return line


class TaskLogResource:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    @property
    def store(self) -> LogStore:
        return self.ctx.logs  # type: ignore[no-any-return]

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, dag_id: str, dag_run_id: str, task_id: str, try_number: str
    ) -> None:
        from leoflow.api.public._query import map_index as query_map_index
        from leoflow.api.public._runs import require_run, require_ti

        number = dto.path_int("try_number", try_number, minimum=0)
        map_index = query_map_index(req)
        full = bool(dto.query_bool(req, "full_content", default=False))
        offset = 0 if full else parse_token(dto.query_str(req, "token"))
        require_run(self.ctx, dag_id, dag_run_id)
        ti = require_ti(self.ctx, dag_id, dag_run_id, task_id, map_index).record
        if number > max(ti.try_number, 0) and not (number == 1 and ti.try_number == 0):
            raise problem.not_found(
                f"try {number} of task instance {task_id!r} (map_index {map_index}) of run {dag_run_id!r} "
                f"does not exist; the latest try is {ti.try_number}"
            )
        key = TryKey(dag_id, dag_run_id, task_id, map_index, number)
        over = try_is_over(ti.state, ti.try_number, number)
        has_log = self.store.exists(key)
        wants_ndjson = NDJSON in (req.get_header("Accept") or "")
        if not has_log:
            lines = [no_logs_line(task_id, number, ti.state if number == ti.try_number else None,
                                  dto.iso(self.ctx.clock()))] if offset == 0 else []
            token = None if over else make_token(offset)
            self._answer(resp, iter(lines), token, wants_ndjson)
            return
        if offset > self.store.size(key) or not self.store.is_line_start(key, offset):
            raise problem.invalid("query.token", _BAD_CONTINUATION)
        if wants_ndjson:
            # Stream what is there now, lazily; the token tells the client where to continue.
            end = max(offset, self.store.complete_end(key))
            token = None if over else make_token(end)
            self._answer(resp, (normalize(x.record) for x in self.store.iter_lines(key, offset, end=end)), token,
                         True)
            return
        chunk = self.store.read(key, offset, limit=MAX_JSON_LINES)
        more = len(chunk.lines) >= MAX_JSON_LINES
        token = None if (over and not more) else make_token(chunk.next_offset)
        self._answer(resp, (normalize(x) for x in chunk.lines), token, False)

    @staticmethod
    def _answer(resp: falcon.Response, lines: Iterator[dict[str, Any]], token: str | None, ndjson: bool) -> None:
        if ndjson:
            resp.content_type = NDJSON
            if token is not None:
                resp.set_header(CONTINUATION_HEADER, token)
            resp.stream = _ndjson(lines)
            return
        resp.media = {"content": list(lines), "continuation_token": token}


def _ndjson(lines: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer: list[str] = []
    for line in lines:
        buffer.append(json.dumps(line, default=str, separators=(",", ":")))
        if len(buffer) >= CHUNK_LINES:
            yield ("\n".join(buffer) + "\n").encode()
            buffer = []
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()


class ExternalLogUrlResource:
    """Airflow answers 400 when its log handler has no external viewer; Leoflow's has none."""

    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        raise problem.bad_request("Task log handler does not support external logs.")


def register(app: falcon.App, ctx: Any) -> None:
    base = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}"
    app.add_route(base + "/logs/{try_number}", TaskLogResource(ctx))
    app.add_route(base + "/externalLogUrl/{try_number}", ExternalLogUrlResource(ctx))
