"""Errors found in DAG files, each pinned to a file position so editors and CI can jump to it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DagFileError:
    """One problem in one DAG file. ``line``/``column`` are 1-based; ``detail`` holds a traceback
    (Python files) that is shown as the import error's stack trace."""

    filename: str
    line: int
    column: int
    message: str
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}: {self.message}"


def stack_trace(errors: list[DagFileError]) -> str:
    """The text an import error shows: every problem of the file, then any traceback."""
    lines = [str(e) for e in errors]
    details = [e.detail for e in errors if e.detail]
    return "\n".join(lines + ([""] if details else []) + details)
