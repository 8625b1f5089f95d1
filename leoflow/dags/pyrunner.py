"""The child side of the Python DAG loader: evaluate one DAG file under limits, print its DAGs.

Run only as ``python -m leoflow.dags.pyrunner`` by ``leoflow.dags.pyloader``, never imported by a
long-lived process: user code may do anything, so it runs in its own process with an address-space
limit, a CPU-time limit and an alarm, inside the bundle directory, with a scrubbed environment.

Protocol: exactly one JSON object on the original stdout (the user's prints are redirected to
stderr so they cannot corrupt it): ``{"dags": [document, ...]}`` or ``{"error": {"message",
"line", "column", "traceback"}}`` where the traceback holds only the user's frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

_OURS = (str(Path(__file__).resolve().parents[1]) + os.sep, "<frozen ")


class DagParseTimeout(Exception):
    pass


def _limit(memory_mb: int, timeout: float) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = int(timeout) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

    def on_alarm(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise DagParseTimeout(f"timed out: evaluating the file took longer than {timeout:g}s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)


def _user_frames(tb: TracebackType | None) -> traceback.StackSummary:
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(_OURS)]
    return traceback.StackSummary.from_list(frames)


def _error(exc: BaseException, fileloc: str, memory_mb: int) -> dict[str, Any]:
    frames = _user_frames(exc.__traceback__)
    line, column = 1, 1
    if isinstance(exc, SyntaxError) and exc.filename == fileloc:
        line, column = exc.lineno or 1, exc.offset or 1
    else:
        for frame in reversed(frames):
            if frame.filename == fileloc:
                line = frame.lineno or 1
                column = (getattr(frame, "colno", None) or 0) + 1
                break
    text = "Traceback (most recent call last):\n" if frames else ""
    text += "".join(frames.format()) + "".join(traceback.format_exception_only(type(exc), exc))
    if isinstance(exc, _Located):
        return {"message": str(exc), "line": exc.line, "column": exc.column, "traceback": ""}
    if isinstance(exc, DagParseTimeout):
        message = str(exc)
    elif isinstance(exc, MemoryError):
        message = f"out of memory: evaluating the file needed more than its limit of {memory_mb} MB"
    else:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
    return {"message": message, "line": line, "column": column, "traceback": text}


def _document(dag: Any) -> dict[str, Any]:
    try:
        return dag.document()
    except TypeError as exc:
        line, column = dag._mark
        raise _Located(f"DAG '{dag.dag_id}': {exc}", line, column) from None


class _Located(Exception):
    """An error found after the file ran, pinned to the ``DAG(...)`` call it is about."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line, self.column = line, column


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fileloc", required=True, help="path of the DAG file relative to the bundle root (cwd)")
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    args = parser.parse_args()

    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Imported before the bundle joins sys.path (a bundle's own "leoflow" cannot shadow ours) and
    # before the limits (our imports never eat the user's budget).
    from leoflow import sdk

    root = os.getcwd()
    sys.path[:0] = [root, str(Path(root, args.fileloc).parent)]

    _limit(args.memory_mb, args.timeout)
    result: dict[str, Any]
    try:
        source = Path(args.fileloc).read_text(encoding="utf-8")
        code = compile(source, args.fileloc, "exec")
        module = {"__name__": "__leoflow_dag__", "__file__": str(Path(root, args.fileloc)),
                  "__builtins__": __builtins__}
        exec(code, module)  # noqa: S102 - this process exists to run the author's file, sandboxed
        signal.setitimer(signal.ITIMER_REAL, 0)
        result = {"dags": [_document(dag) for dag in sdk._registry]}
    except BaseException as exc:  # every failure of user code is reported, not raised
        signal.setitimer(signal.ITIMER_REAL, 0)
        result = {"error": _error(exc, args.fileloc, args.memory_mb)}
    try:
        out.write(json.dumps(result))
    except MemoryError:
        out.write(json.dumps({"error": {"message": "MemoryError while reporting the result", "line": 1,
                                        "column": 1, "traceback": ""}}))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
