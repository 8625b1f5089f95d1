"""How a finished task process becomes a try's outcome: one rule for every runtime that runs tries
locally (the agent and the in-process executor of `leoflow dags test`), so a timeout, a cancel, an
exit code and an XCom return read the same everywhere."""

from __future__ import annotations

from pathlib import Path

from leoflow.agent.exec import ExitStatus
from leoflow.agent.xcom import read_xcom


def classify(
    status: ExitStatus, *, timeout_seconds: float | None, cancel_reason: str | None, xcom_path: Path
) -> tuple[str | None, str | None]:
    """``(xcom JSON text, failure reason)``; a reason of None means the try succeeded."""
    if status.killed_for == "timeout":
        return None, f"execution_timeout: killed after {timeout_seconds or 0:g}s"
    if status.killed_for == "cancelled" or cancel_reason is not None:
        return None, f"cancelled: {cancel_reason}"
    if status.exit_code != 0:
        return None, f"exit code {status.exit_code}"
    return read_xcom(xcom_path)
