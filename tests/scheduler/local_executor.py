"""A real executor for the scheduler's tests: each try is a local subprocess, tracked in a spool dir.

It implements the executor port for real (no mock): ``submit`` starts a process (in its own
session, so ``cancel`` kills the whole group), a small wrapper (``try_wrapper.py``) records
``started`` and ``result.json`` files, and ``events`` turns unseen files into ``TryEvent``s.
Everything lives on disk, so a *new* instance over the same spool (a restarted scheduler) sees
what the old one started, and ``submit`` of a try that already has a directory does nothing:
the port's idempotency, which the restart test relies on.

Events are acknowledged at the next ``events`` call (like the agents executor), by ack files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest

WRAPPER = Path(__file__).with_name("try_wrapper.py")


def _dirname(key: TryKey) -> str:
    raw = f"{key.dag_id}\0{key.run_id}\0{key.task_id}\0{key.map_index}\0{key.try_number}"
    return hashlib.sha1(raw.encode()).hexdigest()[:20]  # noqa: S324 (a name, not security)


def _write_once(path: Path, doc: dict) -> bool:
    """Create ``path`` with ``doc`` only if it does not exist (atomic: link of a temp file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(json.dumps(doc))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


class LocalProcessExecutor:
    name = "local"

    def __init__(self, spool: Path, *, poll: float = 0.01) -> None:
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.poll = poll
        self._unacked: list[Path] = []
        self.submits = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def _dir(self, key: TryKey) -> Path:
        return self.spool / _dirname(key)

    def submit(self, request: TryRequest) -> None:
        self.submits += 1
        d = self._dir(request.key)
        try:
            d.mkdir()
        except FileExistsError:
            return  # idempotent: this try was submitted before (maybe by another instance)
        doc = {"key": request.key.__dict__, "command": list(request.command), "env": dict(request.env)}
        (d / "request.json").write_text(json.dumps(doc))
        log = open(d / "output.log", "wb")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen([sys.executable, str(WRAPPER), str(d)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)

    def cancel(self, key: TryKey, reason: str) -> None:
        d = self._dir(key)
        if not d.exists():
            return
        started = d / "started.json"
        if started.exists():
            pid = json.loads(started.read_text())["pid"]
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        _write_once(d / "result.json", {"outcome": "failed", "exit_code": -9, "reason": f"cancelled: {reason}",
                                        "at": datetime.now(UTC).isoformat()})

    def events(self, timeout: float) -> Iterator[TryEvent]:
        for path in self._unacked:
            path.with_name(path.name + ".ack").touch()
        self._unacked = []
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            found = self._scan()
            if found or time.monotonic() >= deadline:
                return iter(found)
            time.sleep(self.poll)

    def _scan(self) -> list[TryEvent]:
        out: list[TryEvent] = []
        for d in sorted(self.spool.iterdir()):
            req = d / "request.json"
            if not req.exists():
                continue
            key = TryKey(**json.loads(req.read_text())["key"])
            started, result = d / "started.json", d / "result.json"
            for path in (started, result):
                if path.exists() and not path.with_name(path.name + ".ack").exists():
                    doc = json.loads(path.read_text())
                    if path is started:
                        out.append(TryEvent(key, TryOutcome.STARTED, datetime.fromisoformat(doc["at"]),
                                            hostname="localhost", executor_ref=f"local:{doc['pid']}"))
                    else:
                        outcome = TryOutcome(doc["outcome"])
                        out.append(TryEvent(key, outcome, datetime.fromisoformat(doc["at"]),
                                            exit_code=doc.get("exit_code"), reason=doc.get("reason"),
                                            xcom_return=doc.get("xcom")))
                    self._unacked.append(path)
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
