"""Reading a task's XCom return file, which the task itself controls.

The file lives in the try directory, writable by the task (bind-mounted read-write into a
container). So the task decides what is at that path: a symbolic link to a host secret would turn
the secret into an XCom; a link to ``/dev/zero`` or a FIFO would hang the reader. The file is
therefore opened without following links and without blocking, must be a regular file, and at
most one byte over the limit is ever read. Anything else fails the try with the reason, never the
agent. The agent and the in-process executor (``leoflow dags test``) share this rule.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

MAX_XCOM_BYTES = 256 * 1024
_LIMIT_TEXT = f"{MAX_XCOM_BYTES}-byte (256 KiB) limit"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_xcom(path: Path) -> tuple[str | None, str | None]:
    """``(JSON text, None)``, ``(None, None)`` when the task returned nothing, or ``(None, why the try fails)``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "XCom return file is a symbolic link; write the JSON value into the file itself"
        return None, f"XCom return file cannot be opened: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"XCom return file is {_kind(st.st_mode)}, not a regular file"
        if st.st_size > MAX_XCOM_BYTES:
            return None, f"XCom return value is {st.st_size} bytes, over the {_LIMIT_TEXT}"
        chunks: list[bytes] = []
        remaining = MAX_XCOM_BYTES + 1  # the file may still grow (a task's leftover child writing)
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        return None, f"XCom return file cannot be read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_XCOM_BYTES:
        return None, f"XCom return value is more than {MAX_XCOM_BYTES} bytes, over the {_LIMIT_TEXT}"
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        return None, None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"XCom return file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    return text, None
