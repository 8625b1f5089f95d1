"""Commands that need no server: `dags test`, `config show`, `completion`, and the table renderer."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from leoflow.cli import output
from tests.cli.conftest import DAGS, run_cli


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    for name in ("cli_ok.yaml", "cli_fail.yaml"):
        (path / name).write_text(DAGS[name])
    (path / "broken.yaml").write_text("dag_id: broken\ntasks: [")
    return path


def test_dags_test_runs_a_dag_locally_and_prints_results_and_logs(repo: Path) -> None:
    r = run_cli("dags", "test", "cli_ok", "--repo", str(repo), "--conf", '{"who": "tester"}')
    assert r.code == 0, r
    assert "── first  try 1: success" in r.out and "── second  try 1: success" in r.out, r
    assert "hello tester from first" in r.out and "second done" in r.out, r
    assert r.out.index("first  try 1") < r.out.index("second  try 1"), r
    assert "of cli_ok: success in" in r.out.splitlines()[-1], r
    assert "Traceback" not in r.err and "leadership" not in r.err, r


def test_dags_test_failing_dag_exits_1_with_the_task_log(repo: Path) -> None:
    r = run_cli("dags", "test", "cli_fail", "--repo", str(repo))
    assert r.code == 1, r
    assert "── boom  try 1: failed" in r.out and "broken" in r.out and "exit code 3" in r.out, r
    assert "── after: upstream_failed (not run)" in r.out, r
    assert "of cli_fail: failed" in r.out.splitlines()[-1], r


def test_dags_test_unknown_dag_names_what_is_there(repo: Path) -> None:
    r = run_cli("dags", "test", "nope", "--repo", str(repo))
    assert r.code == 1, r
    assert "DAG 'nope' not found" in r.err and "cli_fail, cli_ok" in r.err and "broken.yaml:" in r.err
    r = run_cli("dags", "test", "cli_ok", "--repo", str(repo), "--conf", '{"who": 3}')
    assert r.code == 1 and "--conf: param 'who'" in r.err, r


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "LEOFLOW_AUTH__JWT_SECRET": "super-secret-jwt", "LEOFLOW_STORE__CONSUL_TOKEN": "consul-tok",
           "LEOFLOW_AUTH__JWT_SECRET_FILE": "/etc/leoflow/jwt", "LEOFLOW_SCHEDULER__PARALLELISM": "7",
           "LEOFLOW_CLI_CONFIG": str(tmp_path / "cli.toml")}
    r = run_cli("config", "show", env=env)
    assert r.code == 0, r
    assert "super-secret-jwt" not in r.out and "consul-tok" not in r.out
    assert 'jwt_secret = "<redacted>"' in r.out and 'jwt_secret_file = "/etc/leoflow/jwt"' in r.out
    assert "parallelism = 7" in r.out and "[cli]" in r.out
    r = run_cli("config", "show", "--section", "nope", env=env)
    assert r.code == 2 and "no config section 'nope'" in r.err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_complete_commands_and_choices(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    r = run_cli("completion", shell)
    assert r.code == 0, r
    script = tmp_path / f"leoflow.{shell}"
    script.write_text(r.out)
    if shell == "bash":
        probe = (f"source {script}\n"
                 "COMP_WORDS=(leoflow dags ''); COMP_CWORD=2; _leoflow; echo \"${COMPREPLY[*]}\"\n"
                 "COMP_WORDS=(leoflow runs list -o ''); COMP_CWORD=4; _leoflow; echo \"${COMPREPLY[*]}\"\n"
                 "COMP_WORDS=(leoflow dags trigger --w); COMP_CWORD=3; _leoflow; echo \"${COMPREPLY[*]}\"\n")
    else:
        probe = (f"source {script}\n"
                 "compadd() { shift; print -r -- \"$*\"; }\n"
                 "words=(leoflow dags ''); CURRENT=3; _leoflow\n"
                 "words=(leoflow runs list -o ''); CURRENT=5; _leoflow\n"
                 "words=(leoflow dags trigger --w); CURRENT=4; _leoflow\n")
    proc = subprocess.run([shell, "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    dags_sub, outputs, trigger_opts = proc.stdout.splitlines()
    assert dags_sub.split() == ["list", "pause", "show", "test", "trigger", "unpause", "validate"]
    assert outputs.split() == ["table", "json", "yaml"]
    assert {"--wait", "--wait-timeout"} <= set(trigger_opts.split())


def test_table_is_cut_to_the_terminal_and_coloured_only_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"id": "a" * 40, "state": "success"}, {"id": "b", "state": "failed"}]
    cols = [output.col("ID", "id"), output.col("STATE", "state", output.state_colour)]
    monkeypatch.setenv("COLUMNS", "20")
    buf = io.StringIO()
    output.table(rows, cols, buf)
    lines = buf.getvalue().splitlines()
    assert all(len(line) <= 20 for line in lines) and lines[1].endswith("success") and "…" in lines[1]
    assert "\033[" not in buf.getvalue()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    tty = Tty()
    output.table(rows, cols, tty)
    assert "\033[32msuccess\033[0m" in tty.getvalue() and "\033[31mfailed" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = Tty()
    output.table(rows, cols, tty)
    assert "\033[" not in tty.getvalue()
