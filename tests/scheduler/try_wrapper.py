"""Runs one try for LocalProcessExecutor and records its start and result next to its request.

Started as ``python try_wrapper.py <dir>`` in a new session: the command runs as a child in the
same process group, so killing the group kills both. The result is written with a create-only
link, so a cancel that already wrote a result wins and the try still has exactly one outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def write_once(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(json.dumps(doc))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def main(directory: str) -> int:
    d = Path(directory)
    request = json.loads((d / "request.json").read_text())
    if (d / "result.json").exists():
        return 0  # cancelled before it started
    write_once(d / "started.json", {"pid": os.getpid(), "at": datetime.now(UTC).isoformat()})
    xcom_file = d / "xcom.json"
    env = {**os.environ, **request["env"], "LEOFLOW_XCOM_RETURN": str(xcom_file)}
    code = subprocess.call(request["command"], env=env)
    doc = {"outcome": "success" if code == 0 else "failed", "exit_code": code, "at": datetime.now(UTC).isoformat()}
    if code == 0 and xcom_file.exists():
        doc["xcom"] = xcom_file.read_text()
    write_once(d / "result.json", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
