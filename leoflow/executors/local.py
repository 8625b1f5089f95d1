"""An in-process executor: each try is a local child process, its output written to the LogStore.

It is what ``leoflow dags test`` runs a DAG with: no server, no gRPC endpoint, no agent. It uses
the agent's own process runtime (``leoflow.agent.exec``: argv only, own process group, timeout
and cancel kill the whole group) and the agent's XCom rule (``LEOFLOW_XCOM_RETURN``, JSON, at
most 256 KiB), so a task behaves here as it does on an agent.

Unlike the agents executor it keeps nothing durable: events live in memory and are delivered
once (``events`` may return them the moment they happen). That fits its use, a single process
that lives exactly as long as the runs it executes; a scheduler restart cannot happen within it.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from leoflow.agent.command import CommandError, check_env
from leoflow.agent.exec import RunningProcess, start_process
from leoflow.agent.outcome import classify
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.logs.store import LogStore


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class _Try:
    request: TryRequest
    process: RunningProcess | None = None
    cancel_reason: str | None = None
    finished: bool = False


class LocalExecutor:
    name = "local"

    def __init__(self, logs: LogStore, work_dir: Path, *, capacity: int = 4, kill_grace: float = 5.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.logs = logs
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.kill_grace = kill_grace
        self.hostname = socket.gethostname()
        self._slots = threading.Semaphore(capacity)
        self._events: queue.Queue[TryEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._tries: dict[TryKey, _Try] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- port -----------------------------------------------------------------------------
    def submit(self, request: TryRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the local executor is closed")
            if request.key in self._tries:
                return  # idempotent per try
            entry = _Try(request)
            self._tries[request.key] = entry
        thread = threading.Thread(target=self._run, args=(entry,), name=f"try-{request.key.task_id}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def cancel(self, key: TryKey, reason: str) -> None:
        with self._lock:
            entry = self._tries.get(key)
            if entry is None or entry.finished or entry.cancel_reason is not None:
                return
            entry.cancel_reason = reason or "cancelled by the scheduler"
            process = entry.process
        self._line(key, "leoflow.local", "warning", f"cancelling: {entry.cancel_reason}")
        if process is not None:
            threading.Thread(target=process.kill, args=("cancelled", self.kill_grace), daemon=True).start()

    def events(self, timeout: float) -> Iterator[TryEvent]:
        out: list[TryEvent] = []
        try:
            out.append(self._events.get(timeout=max(0.0, timeout)) if timeout > 0 else self._events.get_nowait())
        except queue.Empty:
            return iter(())
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return iter(out)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            entries = [e for e in self._tries.values() if not e.finished]
        for entry in entries:
            self.cancel(entry.request.key, "the local executor is shutting down")
        for thread in list(self._threads):
            thread.join(self.kill_grace + 5.0)

    # -- one try ----------------------------------------------------------------------------
    def _line(self, key: TryKey, logger: str, level: str, text: str) -> None:
        self.logs.append(key, [{"timestamp": _iso(_now()), "level": level, "event": text, "logger": logger}])

    def _try_dir(self, key: TryKey) -> Path:
        raw = f"{key.dag_id}\0{key.run_id}\0{key.task_id}\0{key.map_index}\0{key.try_number}"
        return self.work_dir / hashlib.sha256(raw.encode()).hexdigest()[:20]

    def _run(self, entry: _Try) -> None:
        request = entry.request
        key = request.key
        with self._slots:
            if entry.cancel_reason is not None:  # cancelled while waiting for a slot: never runs
                self._finish(entry, None, f"cancelled: {entry.cancel_reason}", None, 0.0)
                return
            try_dir = self._try_dir(key)
            try_dir.mkdir(parents=True, exist_ok=True)
            xcom_path = try_dir / "xcom_return.json"
            xcom_path.unlink(missing_ok=True)
            started = time.monotonic()
            code: int | None = None
            reason: str | None = None
            xcom: str | None = None
            try:
                env = check_env(request.env)
                env.update({
                    "LEOFLOW_XCOM_RETURN": str(xcom_path),
                    "AIRFLOW_CTX_DAG_ID": key.dag_id,
                    "AIRFLOW_CTX_DAG_RUN_ID": key.run_id,
                    "AIRFLOW_CTX_TASK_ID": key.task_id,
                    "AIRFLOW_CTX_TRY_NUMBER": str(key.try_number),
                    "AIRFLOW_CTX_MAP_INDEX": str(key.map_index),
                })

                def sink(stream: str, text: str) -> None:
                    self._line(key, f"task.{stream}", "error" if stream == "stderr" else "info", text)

                self._line(key, "leoflow.local", "info", f"task starting on {self.hostname}: {request.command[0]}"
                           if request.command else f"task starting on {self.hostname}")
                process = start_process(list(request.command), env, try_dir, sink)
                with self._lock:
                    entry.process = process
                    cancelled = entry.cancel_reason is not None
                self._events.put(TryEvent(key, TryOutcome.STARTED, _now(), hostname=self.hostname,
                                          executor_ref=f"local:{process.pid}"))
                if cancelled:
                    process.kill("cancelled", self.kill_grace)
                status = process.wait(request.timeout_seconds or None, self.kill_grace)
                code = status.exit_code
                xcom, reason = classify(status, timeout_seconds=request.timeout_seconds,
                                        cancel_reason=entry.cancel_reason, xcom_path=xcom_path)
            except CommandError as exc:
                reason = str(exc)
            except OSError as exc:
                reason = f"could not start the task: {exc}"
            self._finish(entry, code, reason, xcom, time.monotonic() - started)
            with contextlib.suppress(OSError):
                xcom_path.unlink(missing_ok=True)

    def _finish(self, entry: _Try, code: int | None, reason: str | None, xcom: str | None, duration: float) -> None:
        key = entry.request.key
        ok = reason is None
        self._line(key, "leoflow.local", "info" if ok else "error",
                   f"task succeeded in {duration:.3f}s" if ok else f"task failed after {duration:.3f}s: {reason}")
        with self._lock:
            entry.finished = True
        self._events.put(TryEvent(key, TryOutcome.SUCCESS if ok else TryOutcome.FAILED, _now(), exit_code=code,
                                  reason=reason, xcom_return=xcom))
