"""The XCom return file is the task's: links, FIFOs, devices and oversize files fail the try, never leak or hang."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from leoflow.agent.xcom import MAX_XCOM_BYTES, read_xcom
from leoflow.executors.local import LocalExecutor
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.logs.store import LogStore
from tests.agent.conftest import Rig

SECRET = "host-secret-do-not-leak"


def test_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    assert read_xcom(path) == ('{"a": 1}', None)
    assert read_xcom(tmp_path / "missing.json") == (None, None)


def test_symlink_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(f'"{SECRET}"')
    link = tmp_path / "try" / "xcom_return.json"
    link.parent.mkdir()
    link.symlink_to(secret)
    text, reason = read_xcom(link)
    assert text is None and "symbolic link" in (reason or "")


def test_symlink_to_dev_zero_fails_at_once(tmp_path: Path) -> None:
    link = tmp_path / "xcom_return.json"
    link.symlink_to("/dev/zero")
    started = time.monotonic()
    text, reason = read_xcom(link)
    assert text is None and "symbolic link" in (reason or "")
    assert time.monotonic() - started < 5


def test_fifo_without_a_writer_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "xcom_return.json"
    os.mkfifo(fifo)
    text, reason = read_xcom(fifo)
    assert text is None and reason == "XCom return file is a FIFO, not a regular file"


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "xcom_return.json").mkdir()
    assert read_xcom(tmp_path / "xcom_return.json") == (None, "XCom return file is a directory, not a regular file")


def test_over_the_limit_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('"' + "x" * MAX_XCOM_BYTES + '"')
    text, reason = read_xcom(path)
    assert text is None and "256 KiB" in (reason or "") and str(MAX_XCOM_BYTES + 2) in (reason or "")
    at_limit = tmp_path / "y.json"
    at_limit.write_text('"' + "x" * (MAX_XCOM_BYTES - 2) + '"')
    assert read_xcom(at_limit)[1] is None


@pytest.mark.parametrize("target", ["secret", "/dev/zero"])
def test_agent_fails_a_try_whose_xcom_is_a_link(rig: Rig, tmp_path: Path, target: str) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(f'"{SECRET}"')
    dest = str(secret) if target == "secret" else target
    rig.agent()
    event = rig.wait_terminal(rig.submit(f"link_{target.strip('/').replace('/', '_')}",
                                         ["sh", "-c", f'ln -s {dest} "$LEOFLOW_XCOM_RETURN"']))
    assert event.outcome is TryOutcome.FAILED
    assert "symbolic link" in (event.reason or "")
    assert event.xcom_return is None


def test_agent_fails_a_try_whose_xcom_is_a_fifo(rig: Rig) -> None:
    rig.agent()
    event = rig.wait_terminal(rig.submit("fifo", ["sh", "-c", 'mkfifo "$LEOFLOW_XCOM_RETURN"']))
    assert event.outcome is TryOutcome.FAILED
    assert event.reason == "XCom return file is a FIFO, not a regular file"


def test_local_executor_uses_the_same_rule(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(f'"{SECRET}"')
    executor = LocalExecutor(LogStore(tmp_path / "logs"), tmp_path / "work", kill_grace=1.0)
    try:
        key = TryKey("d", "r", "t", -1, 1)
        executor.submit(TryRequest(key, ("sh", "-c", f'ln -s {secret} "$LEOFLOW_XCOM_RETURN"')))
        terminal: TryEvent | None = None
        deadline = time.monotonic() + 20
        while terminal is None and time.monotonic() < deadline:
            terminal = next((e for e in executor.events(0.2) if e.terminal), None)
        assert terminal is not None
        assert terminal.outcome is TryOutcome.FAILED and "symbolic link" in (terminal.reason or "")
        assert terminal.xcom_return is None
    finally:
        executor.close()
