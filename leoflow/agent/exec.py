"""Runtimes that execute one try: a plain process, or a docker/podman container.

Every try runs in its own process group (``start_new_session``) so a timeout or a cancel kills
the task *and* everything it spawned, not just the first process: SIGTERM to the group, then
SIGKILL after a grace period. Output is read line by line on two threads and handed to a callback,
which is how logs stream to the server while the task still runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from leoflow.agent.command import CommandError, container_argv, process_argv

LineSink = Callable[[str, str], None]  # (stream, text)
MAX_LINE = 64 * 1024
# Only these variables of the agent's own environment reach a task (never its token or config).
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    # "timeout" | "cancelled" | None
    killed_for: str | None = None


class RunningProcess:
    def __init__(self, popen: subprocess.Popen[bytes], sink: LineSink,
                 on_kill: Callable[[], None] | None = None) -> None:
        self._popen = popen
        self._on_kill = on_kill
        self._killed_for: str | None = None
        self._readers = [
            threading.Thread(target=self._pump, args=(popen.stdout, "stdout", sink), daemon=True),
            threading.Thread(target=self._pump, args=(popen.stderr, "stderr", sink), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @staticmethod
    def _pump(stream: IO[bytes] | None, name: str, sink: LineSink) -> None:
        if stream is None:
            return
        with stream:
            for raw in iter(lambda: stream.readline(MAX_LINE), b""):
                sink(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def kill(self, why: str, grace: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL it after ``grace``; idempotent."""
        if self._killed_for is None:
            self._killed_for = why
        if self._on_kill is not None:
            self._on_kill()
        self._signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(grace)
        # The leader may be gone while children it left in the group still run.
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def wait(self, timeout: float | None, grace: float = 5.0) -> ExitStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                code = self._popen.wait(remaining)
                break
            except subprocess.TimeoutExpired:
                self.kill("timeout", grace)
                deadline = None  # SIGKILL is on its way: now wait for the exit status
        # Stragglers of the group (a daemonised grandchild) die with the try.
        self._signal(signal.SIGKILL)
        for reader in self._readers:
            reader.join(timeout=2.0)
        return ExitStatus(code, self._killed_for)


def find_container_cli(preference: str) -> str | None:
    names = (preference,) if preference in ("docker", "podman") else ("docker", "podman")
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def start_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path, sink: LineSink) -> RunningProcess:
    full_env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    full_env.update(env)
    try:
        popen = subprocess.Popen(
            process_argv(argv), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {argv[0]}") from exc
    except PermissionError as exc:
        raise CommandError(f"command not executable: {argv[0]}") from exc
    return RunningProcess(popen, sink)


def start_container(cli: str, image: str, command: Sequence[str], env: Mapping[str, str], cwd: Path,
                    sink: LineSink, *, name: str, cpu: int, memory: int, memory_max: int = 0) -> RunningProcess:
    argv = container_argv(cli, image, command, sorted(env), name=name, workdir=str(cwd), cpu_mhz=cpu,
                          memory_mb=memory, memory_max_mb=memory_max)
    full_env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    full_env.update(env)  # the CLI passes these by name into the container
    popen = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True, close_fds=True)

    def kill_container() -> None:
        subprocess.run([cli, "kill", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30, check=False)

    return RunningProcess(popen, sink, on_kill=kill_container)
