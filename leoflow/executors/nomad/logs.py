"""Copying a Nomad allocation's stdout/stderr into the LogStore while it runs.

Why follow the framed log stream: it spans the rotated files (``main.stdout.0``, ``.1`` ...) by
itself, carries heartbeats, and ends on its own once the task is dead and everything was sent,
which is the moment the try may be reported and the job purged (logs must be out of Nomad before
garbage collection removes them). Lines are written in the agents' NDJSON shape
(``{"timestamp","level","event","logger"}``, logger ``task.stdout``/``task.stderr``), so the UI
reads Nomad tries exactly like agent tries.

A scheduler that takes over a running try copies its logs again from the start; the lines the
previous leader already wrote for that stream are skipped (counted in the LogStore), so a
failover does not duplicate them.

Every line is masked for the try's declared secrets before it is written (adr/0097). When the mask
set cannot be built (Vault unreachable), the lines are held back, not written unmasked: the
follower waits and asks again, and Nomad keeps the bytes meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from leoflow.executors.nomad.client import NomadClient, NomadError
from leoflow.executors.nomad.jobspec import TASK
from leoflow.executors.port import TryKey
from leoflow.logs.store import LogStore
from leoflow.secrets.masking import Masker

log = logging.getLogger("leoflow.executors.nomad")

STREAMS = ("stdout", "stderr")
_NOTHING_TO_MASK = Masker()
_MAX_LINE = 64 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat()


def line_record(kind: str, text: str) -> dict[str, str]:
    return {"timestamp": _now(), "level": "error" if kind == "stderr" else "info", "event": text,
            "logger": f"task.{kind}"}


def note_record(text: str, level: str = "info") -> dict[str, str]:
    """A line from the executor itself (placement, node, outcome), shown among the task's lines."""
    return {"timestamp": _now(), "level": level, "event": text, "logger": "leoflow.nomad"}


class LogCopier:
    """Two follower threads (stdout, stderr) for one allocation; ``wait`` until both ended."""

    def __init__(self, client: NomadClient, store: LogStore, key: TryKey, alloc_id: str, *,
                 stop: threading.Event, on_lines: Callable[[int], None] | None = None,
                 masker: Callable[[], Masker] | None = None) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.alloc_id = alloc_id
        self._stop = stop
        self._on_lines = on_lines
        # None: the try declares no secrets. Otherwise called before each write; when it raises
        # (SecretsUnavailable: Vault cannot answer) the lines wait.
        self._masker_source = masker
        self._masker: Masker | None = None
        self._masker_lock = threading.Lock()
        self._held_noted = False
        self._threads = [threading.Thread(target=self._follow, args=(kind,), name=f"nomad-logs-{kind}", daemon=True)
                         for kind in STREAMS]
        self.errors: list[str] = []

    def start(self) -> LogCopier:
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _already_copied(self, kind: str) -> int:
        logger = f"task.{kind}"
        return sum(1 for line in self.store.iter_lines(self.key) if line.record.get("logger") == logger)

    def _follow(self, kind: str) -> None:
        skip = self._already_copied(kind)
        offset = 0
        pending = b""
        failures = 0
        while not self._stop.is_set():
            try:
                for frame in self.client.logs(self.alloc_id, TASK, kind, offset=offset, follow=True):
                    data = frame.get("Data")
                    if not isinstance(data, bytes) or not data:
                        continue
                    offset += len(data)
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > _MAX_LINE:  # a very long line without newline: cut it
                        lines.append(pending)
                        pending = b""
                    skip = self._write(kind, lines, skip)
                    failures = 0
                    if self._stop.is_set():
                        return
                break  # the stream ended: the task is dead and everything was sent
            except NomadError as exc:
                failures += 1
                if failures >= 5 or exc.status == 404:
                    self.errors.append(f"{kind}: {exc}")
                    log.warning("log copy gave up", extra={"alloc": self.alloc_id, "stream": kind, "error": str(exc)})
                    break
                self._stop.wait(min(0.2 * 2**failures, 5.0))
        if pending:
            self._write(kind, [pending], skip)

    def _mask_set(self) -> Masker | None:
        """The try's masker, waiting (bounded by ``stop``) while it cannot be built; None on stop."""
        if self._masker_source is None:
            return _NOTHING_TO_MASK
        delay = 0.2
        while True:
            with self._masker_lock:
                if self._masker is not None:
                    return self._masker
                try:
                    self._masker = self._masker_source()
                    return self._masker
                except Exception as failure:  # Vault unavailable (SecretsUnavailable), the store failing
                    exc = failure
                    first = not self._held_noted
                    self._held_noted = True
            if first:
                # Names ids and Vault's error only, never a value.
                log.warning("task log lines held back: cannot read the task's secrets to mask them",
                            extra={"alloc": self.alloc_id, "task_id": self.key.task_id, "error": str(exc)})
                self.store.append(self.key, [note_record(
                    f"log lines held back until the task's declared secrets can be read to mask them: {exc}",
                    "warning")])
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, 5.0)

    def _write(self, kind: str, lines: list[bytes], skip: int) -> int:
        texts = []
        for raw in lines:
            if skip > 0:
                skip -= 1
                continue
            texts.append(raw.decode("utf-8", "replace").rstrip("\r"))
        if not texts:
            return skip
        masker = self._mask_set()
        if masker is None:
            return skip  # stopping: unwritten lines are copied by whoever takes over
        records = [line_record(kind, masker.mask(text)) for text in texts]
        if records:
            self.store.append(self.key, records)
            if self._on_lines is not None:
                self._on_lines(len(records))
        return skip
