"""One real `leoflow standalone` for the whole CLI suite, and a way to run the installed `leoflow` console
script against it exactly as a user's shell would (a subprocess, its stdout, stderr and exit code).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, DagRepo, Standalone, start_standalone

LEOFLOW = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "leoflow"

DAGS = {
    "cli_ok.yaml": """
dag_id: cli_ok
description: two tasks that succeed
tags: [cli]
is_paused_upon_creation: false
params:
  who:
    default: world
    type: string
tasks:
  - task_id: first
    command: ["echo", "hello {{ params.who }} from first"]
  - task_id: second
    upstream: [first]
    command: ["echo", "second done"]
""",
    "cli_fail.yaml": """
dag_id: cli_fail
description: fails on purpose
tags: [cli]
is_paused_upon_creation: false
tasks:
  - task_id: boom
    command: ["sh", "-c", "echo about to fail; echo broken >&2; exit 3"]
  - task_id: after
    upstream: [boom]
    command: ["echo", "never"]
""",
    "cli_slow.yaml": """
dag_id: cli_slow
description: logs slowly, for logs -f
tags: [cli]
is_paused_upon_creation: false
tasks:
  - task_id: ticker
    command: ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.4; done"]
""",
    "cli_paused.yaml": """
dag_id: cli_paused
tags: [cli, other]
tasks:
  - task_id: only
    command: ["true"]
""",
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> Result:
    proc = subprocess.run([str(LEOFLOW), *args], capture_output=True, text=True, input=stdin, timeout=timeout,
                          env=dict(env if env is not None else os.environ))
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Cli:
    """The CLI pointed at the module's standalone (server and token from the environment)."""

    sa: Standalone
    token: str
    tmp: Path

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.sa.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LEOFLOW_TOKEN")}
        env.update({"LEOFLOW_SERVER": self.server, "LEOFLOW_TOKEN": self.token,
                    "LEOFLOW_CLI_CONFIG": str(self.tmp / "cli.toml"), "LEOFLOW_HOME": str(self.sa.home)})
        env.update(extra)
        return env

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60.0, **extra: str) -> Result:
        return run_cli(*args, env=self.env(**extra), stdin=stdin, timeout=timeout)


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("cli")
    repo = DagRepo(root / "dags-repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.commit(DAGS)
    sa = start_standalone(root / "leoflow-home", repo.path)
    try:
        for dag_id in ("cli_ok", "cli_fail", "cli_slow", "cli_paused"):
            sa.api.wait_dag(dag_id)
        token = sa.api.session.headers["Authorization"].split(" ", 1)[1]
        yield Cli(sa, str(token), root)
    finally:
        sa.stop()


__all__ = ["PASSWORD", "Cli", "Result", "run_cli"]
