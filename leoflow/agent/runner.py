"""The agent's tries: capacity, lifecycle, and reports that survive a dropped link.

Exactly-once reporting: when a try ends, its terminal report is written to
``<work_dir>/outcomes/`` (atomically, fsynced) *before* it is offered to the link, and deleted only
when the server acknowledges it. A link that is down when the task ends therefore costs nothing:
the report is sent after the reconnect (also after an agent restart), and the server's
compare-and-set turns any resend into DUPLICATE, never a second result.

Logs: every line gets a per-try sequence number and stays in memory until the server
acknowledges it; after a reconnect the link resends from the last acknowledged line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import json_format

from leoflow.agent.command import CommandError, check_env, container_name
from leoflow.agent.exec import RunningProcess, find_container_cli, start_container, start_process
from leoflow.agent.metrics import METRICS
from leoflow.agent.outcome import classify
from leoflow.agentrpc.gen import agent_pb2 as pb

log = logging.getLogger(__name__)

MAX_BATCH_LINES = 500
TryId = tuple[str, str, str, int, int]


def try_id(ref: pb.TryRef) -> TryId:
    return (ref.dag_id, ref.run_id, ref.task_id, ref.map_index, ref.try_number)


def _ref(tid: TryId) -> pb.TryRef:
    return pb.TryRef(dag_id=tid[0], run_id=tid[1], task_id=tid[2], map_index=tid[3], try_number=tid[4])


def _slug(tid: TryId) -> str:
    return hashlib.sha256(json.dumps(tid).encode()).hexdigest()[:32]


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``: tells a leftover process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Signal:
    """A change counter the link waits on, so it sends new lines and reports without polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            if self._version == seen:
                self._cond.wait(timeout)
            return self._version


@dataclass
class LogSpool:
    lines: list[pb.LogLine] = field(default_factory=list)
    base_seq: int = 1  # sequence number of lines[0]
    acked_through: int = 0
    closed: bool = False  # the try ended: no more lines will come

    @property
    def last_seq(self) -> int:
        return self.base_seq + len(self.lines) - 1

    def ack(self, through: int) -> None:
        if through <= self.acked_through:
            return
        drop = min(len(self.lines), through - self.base_seq + 1)
        if drop > 0:
            del self.lines[:drop]
            self.base_seq += drop
        self.acked_through = through


@dataclass
class SessionView:
    """What one stream has already sent; reset on every reconnect so everything unacked is resent."""

    sent_logs: dict[TryId, int] = field(default_factory=dict)
    sent_reports: set[int] = field(default_factory=set)


@dataclass
class _Try:
    tid: TryId
    assignment: pb.Assignment
    started: float
    process: RunningProcess | None = None
    cancel_reason: str | None = None


class Runner:
    def __init__(self, work_dir: Path, capacity: int, *, runtime: str = "auto", hostname: str | None = None,
                 kill_grace: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.work_dir = work_dir
        self.capacity = capacity
        self.runtime = runtime
        self.hostname = hostname or socket.gethostname()
        self.kill_grace = kill_grace
        self.signal = Signal()
        self.draining = False
        self._clock = clock
        self._lock = threading.RLock()
        self._running: dict[TryId, _Try] = {}
        self._spools: dict[TryId, LogSpool] = {}
        self._reports: dict[int, pb.StateReport] = {}
        self._next_report = int(clock() * 1000) * 1000  # unique across agent restarts
        self._threads: list[threading.Thread] = []
        (work_dir / "outcomes").mkdir(parents=True, exist_ok=True)
        (work_dir / "tries").mkdir(parents=True, exist_ok=True)
        (work_dir / "running").mkdir(parents=True, exist_ok=True)
        METRICS.capacity.set(capacity)
        METRICS.running.set(0)
        self._load_outcomes()
        self.orphans_killed = self._recover_orphans()

    # -- tries a previous incarnation accepted ------------------------------------------------
    def _running_path(self, tid: TryId) -> Path:
        return self.work_dir / "running" / f"{_slug(tid)}.json"

    def _write_running(self, tid: TryId, ref: pb.TryRef, pid: int | None) -> None:
        doc = {"ref": json_format.MessageToDict(ref), "pid": pid, "start": _start_time(pid) if pid else None}
        path = self._running_path(tid)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def _recover_orphans(self) -> int:
        """Tries a killed agent had accepted: kill what is left of them and report them failed.

        Why failed and not silently re-run: the process may have done part of its work, so the
        same try number must never start again; the scheduler retries it per the task's retries.
        """
        killed = 0
        for path in sorted((self.work_dir / "running").glob("*.json")):
            try:
                doc = json.loads(path.read_text())
                ref = json_format.ParseDict(doc["ref"], pb.TryRef())
            except (OSError, ValueError, KeyError, json_format.ParseError) as exc:
                log.error("unreadable running record removed", extra={"path": str(path), "error": str(exc)})
                path.unlink(missing_ok=True)
                continue
            pid = doc.get("pid")
            if pid and _start_time(int(pid)) == doc.get("start"):
                with contextlib.suppress(OSError):
                    os.killpg(int(pid), signal.SIGKILL)
                    killed += 1
                log.warning("killed a try left running by a previous agent", extra={"pid": pid})
            self._report(pb.StateReport(ref=ref, state=pb.TASK_STATE_FAILED,
                                        reason="the agent restarted while this try ran; its process was killed"),
                         persist=True)
            path.unlink(missing_ok=True)
        return killed

    # -- persisted outcomes ----------------------------------------------------------------
    def _outcome_path(self, tid: TryId) -> Path:
        return self.work_dir / "outcomes" / f"{_slug(tid)}.json"

    def _load_outcomes(self) -> None:
        for path in sorted((self.work_dir / "outcomes").glob("*.json")):
            try:
                report = json_format.Parse(path.read_text(), pb.StateReport())
            except (OSError, json_format.ParseError) as exc:
                log.error("unreadable outcome file left in place", extra={"path": str(path), "error": str(exc)})
                continue
            self._reports[report.report_id] = report
            log.info("outcome from before a restart will be reported", extra={"task_id": report.ref.task_id})

    def _persist(self, report: pb.StateReport) -> None:
        path = self._outcome_path(try_id(report.ref))
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json_format.MessageToJson(report).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- what the link asks ----------------------------------------------------------------
    def known(self) -> list[pb.TryRef]:
        with self._lock:
            ids = set(self._running)
            ids |= {try_id(r.ref) for r in self._reports.values() if r.state != pb.TASK_STATE_RUNNING}
        return [_ref(t) for t in sorted(ids)]

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def collect(self, view: SessionView) -> list[pb.AgentMessage]:
        """Unsent log lines first, then unsent reports: a try's lines reach the server before its result."""
        out: list[pb.AgentMessage] = []
        with self._lock:
            for tid, spool in self._spools.items():
                sent = max(view.sent_logs.get(tid, 0), spool.acked_through)
                if spool.last_seq <= sent:
                    continue
                start = sent + 1
                while start <= spool.last_seq:
                    chunk = spool.lines[start - spool.base_seq : start - spool.base_seq + MAX_BATCH_LINES]
                    out.append(pb.AgentMessage(logs=pb.LogBatch(ref=_ref(tid), first_seq=start, lines=chunk)))
                    start += len(chunk)
                view.sent_logs[tid] = spool.last_seq
            for report_id in sorted(self._reports):
                if report_id not in view.sent_reports:
                    view.sent_reports.add(report_id)
                    out.append(pb.AgentMessage(report=self._reports[report_id]))
        return out

    # -- server messages -------------------------------------------------------------------
    def on_assignment(self, assignment: pb.Assignment) -> pb.AssignmentAck:
        tid = try_id(assignment.ref)
        with self._lock:
            if tid in self._running or any(try_id(r.ref) == tid for r in self._reports.values()):
                return pb.AssignmentAck(ref=assignment.ref, accepted=True, reason="already running here")
            if self.draining:
                return pb.AssignmentAck(ref=assignment.ref, accepted=False, reason="agent is draining")
            if len(self._running) >= self.capacity:
                return pb.AssignmentAck(ref=assignment.ref, accepted=False, reason="agent at capacity")
            # Recorded before the ack: a try this agent accepted is never silently forgotten.
            self._write_running(tid, assignment.ref, None)
            entry = _Try(tid, assignment, started=self._clock())
            self._running[tid] = entry
            self._spools[tid] = LogSpool()
            METRICS.running.set(len(self._running))
        thread = threading.Thread(target=self._run, args=(entry,), name=f"try-{assignment.ref.task_id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return pb.AssignmentAck(ref=assignment.ref, accepted=True)

    def on_cancel(self, cancel: pb.Cancel) -> None:
        tid = try_id(cancel.ref)
        with self._lock:
            entry = self._running.get(tid)
            if entry is None or entry.cancel_reason is not None:
                return
            entry.cancel_reason = cancel.reason or "cancelled by the scheduler"
            process = entry.process
        self._line(tid, "agent", "warning", f"cancelling: {entry.cancel_reason}")
        if process is not None:
            threading.Thread(target=process.kill, args=("cancelled", self.kill_grace), daemon=True).start()

    def on_report_ack(self, ack: pb.ReportAck) -> None:
        with self._lock:
            report = self._reports.pop(ack.report_id, None)
            if report is None or report.state == pb.TASK_STATE_RUNNING:
                return
            tid = try_id(report.ref)
            self._outcome_path(tid).unlink(missing_ok=True)
            spool = self._spools.get(tid)
            accepted = ack.result == pb.ReportAck.RESULT_ACCEPTED
            if spool is not None and (spool.last_seq <= spool.acked_through or not accepted):
                self._spools.pop(tid, None)
        if ack.result == pb.ReportAck.RESULT_STALE:
            log.warning("server refused a stale report", extra={"task_id": report.ref.task_id,
                                                               "try_number": report.ref.try_number})
        shutil.rmtree(self.work_dir / "tries" / _slug(tid), ignore_errors=True)

    def on_log_ack(self, ack: pb.LogAck) -> None:
        tid = try_id(ack.ref)
        with self._lock:
            spool = self._spools.get(tid)
            if spool is None:
                return
            spool.ack(ack.through_seq)
            finished = tid not in self._running and not any(try_id(r.ref) == tid for r in self._reports.values())
            if finished and spool.last_seq <= spool.acked_through:
                self._spools.pop(tid, None)

    # -- the try ---------------------------------------------------------------------------
    def _line(self, tid: TryId, stream: str, level: str, text: str) -> None:
        with self._lock:
            spool = self._spools.get(tid)
            if spool is None:
                return
            spool.lines.append(pb.LogLine(timestamp=_now_iso(), level=level, event=text, stream=stream))
        self.signal.notify()

    def _report(self, report: pb.StateReport, persist: bool) -> None:
        with self._lock:
            self._next_report += 1
            report.report_id = self._next_report
            report.hostname = self.hostname
            report.occurred_at_ms = report.occurred_at_ms or int(self._clock() * 1000)
            if persist:
                self._persist(report)
            self._reports[report.report_id] = report
        self.signal.notify()

    def _run(self, entry: _Try) -> None:
        a = entry.assignment
        tid = entry.tid
        try_dir = self.work_dir / "tries" / _slug(tid)
        try_dir.mkdir(parents=True, exist_ok=True)
        xcom_path = try_dir / "xcom_return.json"
        xcom_path.unlink(missing_ok=True)
        status_code: int | None = None
        reason: str | None = None
        xcom: str | None = None
        started = time.monotonic()
        try:
            env = check_env(a.env)
            env.update({
                "LEOFLOW_XCOM_RETURN": str(xcom_path),
                "AIRFLOW_CTX_DAG_ID": a.ref.dag_id,
                "AIRFLOW_CTX_DAG_RUN_ID": a.ref.run_id,
                "AIRFLOW_CTX_TASK_ID": a.ref.task_id,
                "AIRFLOW_CTX_TRY_NUMBER": str(a.ref.try_number),
                "AIRFLOW_CTX_MAP_INDEX": str(a.ref.map_index),
            })
            sink = lambda stream, text: self._line(tid, stream, "error" if stream == "stderr" else "info", text)  # noqa: E731
            process = self._start(a, env, try_dir, sink)
            self._write_running(tid, a.ref, process.pid)
            with self._lock:
                entry.process = process
                cancelled = entry.cancel_reason is not None
            self._report(pb.StateReport(ref=a.ref, state=pb.TASK_STATE_RUNNING), persist=False)
            self._line(tid, "agent", "info", f"task started on {self.hostname} (pid {process.pid})")
            if cancelled:
                process.kill("cancelled", self.kill_grace)
            status = process.wait(a.timeout_seconds or None, self.kill_grace)
            status_code = status.exit_code
            xcom, reason = classify(status, timeout_seconds=a.timeout_seconds, cancel_reason=entry.cancel_reason,
                                    xcom_path=xcom_path)
        except CommandError as exc:
            reason = str(exc)
        except Exception as exc:  # the try fails, the agent lives on
            log.exception("try crashed inside the agent", extra={"task_id": a.ref.task_id})
            reason = f"agent error: {type(exc).__name__}: {exc}"
        duration = time.monotonic() - started
        ok = reason is None
        self._line(tid, "agent", "info" if ok else "error",
                   f"task succeeded in {duration:.3f}s" if ok else f"task failed after {duration:.3f}s: {reason}")
        with self._lock:
            spool = self._spools.get(tid)
            if spool is not None:
                spool.closed = True
        report = pb.StateReport(ref=a.ref, state=pb.TASK_STATE_SUCCESS if ok else pb.TASK_STATE_FAILED,
                                reason=reason or "")
        if status_code is not None:
            report.has_exit_code = True
            report.exit_code = status_code
        if xcom is not None:
            report.has_xcom_return = True
            report.xcom_return = xcom
        METRICS.durations.observe(duration)
        METRICS.exit_codes.labels(exit_code=str(status_code if status_code is not None else "none")).inc()
        self._report(report, persist=True)
        self._running_path(tid).unlink(missing_ok=True)
        with self._lock:
            self._running.pop(tid, None)
            METRICS.running.set(len(self._running))
        self.signal.notify()

    def _start(self, a: pb.Assignment, env: dict[str, str], cwd: Path,
               sink: Callable[[str, str], None]) -> RunningProcess:
        wants_container = bool(a.image) and (a.runtime == "container" or self.runtime in ("docker", "podman"))
        if not wants_container:
            return start_process(list(a.command), env, cwd, sink)
        cli = find_container_cli(self.runtime)
        if cli is None:
            raise CommandError(f"task {a.ref.task_id} asks for a container ({a.image}) but neither docker nor "
                               "podman is installed on this agent")
        name = container_name(*try_id(a.ref))
        return start_container(cli, a.image, list(a.command), env, cwd, sink, name=name,
                               cpu=a.resources.cpu, memory=a.resources.memory,
                               memory_max=a.resources.memory_max)

    # -- shutdown --------------------------------------------------------------------------
    def kill_all(self, why: str) -> None:
        with self._lock:
            entries = list(self._running.values())
        for entry in entries:
            with self._lock:
                entry.cancel_reason = entry.cancel_reason or why
                process = entry.process
            if process is not None:
                process.kill("cancelled", self.kill_grace)

    def idle(self) -> bool:
        """Nothing running and nothing left to report."""
        with self._lock:
            return not self._running and not any(r.state != pb.TASK_STATE_RUNNING for r in self._reports.values())

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
