"""The parent side of Python DAG loading: run ``pyrunner`` in a subprocess and read its answer.

The scheduler and the server never import a user's DAG file. The child gets the bundle directory
as its working directory, an environment holding nothing but PATH and locale (no tokens leak into
user code), its own process group (so a timeout kills everything it spawned) and the limits of
``PythonLimits``. Its DAG documents go through the same builder as YAML files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import leoflow
from leoflow.dags.build import build_dag
from leoflow.dags.errors import DagFileError
from leoflow.dags.loader import ParsedFile, PythonLimits, issues_to_errors
from leoflow.dags.nodes import from_json

_GRACE = 3.0  # seconds past the child's own alarm before the parent kills the group
_STDERR_TAIL = 4000
_MAX_ANSWER_BYTES = 64 * 1024 * 1024


def _tail(file: IO[bytes]) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - _STDERR_TAIL))
    return file.read().decode("utf-8", "replace")


def _child_env() -> dict[str, str]:
    package_parent = str(Path(leoflow.__file__).resolve().parents[1])
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": package_parent,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def parse_python_file(root: Path, fileloc: str, source: str, limits: PythonLimits) -> ParsedFile:
    def fail(message: str, line: int = 1, column: int = 1, detail: str | None = None) -> ParsedFile:
        return ParsedFile(fileloc, source, errors=(DagFileError(fileloc, line, column, message, detail),))

    # -P: the bundle directory (our cwd) is not put on sys.path before the runner has imported the SDK.
    argv = [sys.executable, "-P", "-m", "leoflow.dags.pyrunner", "--fileloc", fileloc,
            "--timeout", str(limits.timeout), "--memory-mb", str(limits.memory_mb)]
    # Output goes to files, not pipes: a file that prints gigabytes cannot fill our memory, and a
    # grandchild that keeps a pipe open cannot make us wait.
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, cwd=root, env=_child_env(), stdin=subprocess.DEVNULL,
                                stdout=out_file, stderr=err_file, start_new_session=True)
        try:
            proc.wait(timeout=limits.timeout + _GRACE)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            return fail(f"timed out: evaluating the file took longer than {limits.timeout:g}s")
        finally:
            _kill_group(proc)  # children the file may have left behind
        stderr_tail = _tail(err_file)
        size = out_file.seek(0, os.SEEK_END)
        if size > _MAX_ANSWER_BYTES:
            return fail(f"the DAG file's process answered {size} bytes, over the {_MAX_ANSWER_BYTES} byte limit")
        out_file.seek(0)
        out = out_file.read()
    if proc.returncode != 0 or not out:
        if proc.returncode and proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            if name == "SIGXCPU":
                return fail(f"timed out: evaluating the file used more than its CPU time limit of "
                            f"{int(limits.timeout) + 2}s", detail=stderr_tail or None)
            return fail(f"the DAG file's process was killed by {name}", detail=stderr_tail or None)
        return fail(f"the DAG file's process exited with status {proc.returncode}", detail=stderr_tail or None)
    try:
        answer = json.loads(out)
    except json.JSONDecodeError:
        return fail("the DAG file's process returned unreadable output", detail=stderr_tail or None)
    if "error" in answer:
        error = answer["error"]
        return fail(error["message"], int(error.get("line", 1)), int(error.get("column", 1)),
                    error.get("traceback") or None)
    documents = answer.get("dags", [])
    if not documents:
        return fail("no DAG defined: create one with leoflow.sdk.DAG")
    dags = []
    errors: list[DagFileError] = []
    for document in documents:
        dag, issues = build_dag(from_json(document), fileloc)
        if dag is None:
            errors.extend(issues_to_errors(fileloc, issues))
        elif any(d.dag_id == dag.dag_id for d in dags):
            errors.append(DagFileError(fileloc, 1, 1, f"dag_id '{dag.dag_id}' is defined twice in this file"))
        else:
            dags.append(dag)
    if errors:
        return ParsedFile(fileloc, source, errors=tuple(errors))
    return ParsedFile(fileloc, source, dags=tuple(dags))
