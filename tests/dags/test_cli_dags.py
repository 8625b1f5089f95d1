"""`leoflow dags validate` and `leoflow dags list`, as CI in a DAG repository runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from leoflow.cli.main import main

from .conftest import GitRepo, dag_yaml

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_validate_examples_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dags", "validate", str(JOBS)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == "6 DAG(s) in 6 file(s): all valid\n"


def test_validate_reports_every_error_as_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(dag_yaml("good"))
    (tmp_path / "bad.yaml").write_text("dag_id: bad\nschedul: x\ntasks:\n  - {task_id: t, retries: -2, image: i}\n")
    (tmp_path / "dup.yaml").write_text(dag_yaml("good"))
    (tmp_path / "crash.py").write_text("from leoflow.sdk import DAG\nraise SystemExit('nope')\n")
    (tmp_path / "helper.py").write_text("X = 1\n")  # not a DAG file: skipped
    assert main(["dags", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"{tmp_path}/bad.yaml:2:1: unknown key 'schedul' (did you mean 'schedule'?)",
        f"{tmp_path}/bad.yaml:4:27: task 't': retries: expected an integer >= 0, got -2",
        f"{tmp_path}/crash.py:2:1: SystemExit: nope",
        "    Traceback (most recent call last):",
        '      File "crash.py", line 2, in <module>',
        "        raise SystemExit('nope')",
        "    SystemExit: nope",
        f"{tmp_path}/good.yaml:1:1: dag_id 'good' is already defined in dup.yaml",
    ]
    assert out.err == "4 error(s) in 3 file(s); 1 valid DAG(s)\n"


def test_validate_single_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(dag_yaml("a"))
    Path("notes.txt").write_text("x")
    assert main(["dags", "validate", "a.yaml"]) == 0
    assert main(["dags", "validate", "a.yaml", "notes.txt", "missing.yaml"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "notes.txt:1:1: not a DAG file (expected .yaml, .yml or .py)",
        "missing.yaml:1:1: no such file or directory",
    ]


def test_validate_is_a_real_command_with_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("dag_id: x\n")
    cli = [sys.executable, "-m", "leoflow.cli.main", "dags", "validate"]
    bad = subprocess.run([*cli, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and bad.stdout == f"{tmp_path}/bad.yaml:1:1: missing required key 'tasks'\n"
    good = subprocess.run([*cli, str(JOBS)], capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stdout + good.stderr


def test_python_limits_come_from_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "slow.py").write_text("import time\nfrom leoflow.sdk import DAG\ntime.sleep(30)\n")
    assert main(["dags", "validate", "--python-timeout", "0.3", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{tmp_path}/slow.py:3:1: timed out: evaluating the file took longer than 0.3s")


def test_list_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.write("b.yaml", dag_yaml("b", tasks=3, extra="schedule: '@hourly'"))
    repo.write("a.yaml", dag_yaml("a"))
    repo.write("broken.yaml", "dag_id: [")
    sha = repo.commit()
    assert main(["dags", "list", "--repo", str(repo.path)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split() == ["DAG_ID", "SCHEDULE", "TASKS", "VERSION", "FILE"]
    assert [line.split()[:3] for line in lines[1:]] == [["a", "None", "1"], ["b", "@hourly", "3"]]
    assert f"commit {sha[:12]}" in out.err and "1 file(s) would be import errors" in out.err
    assert main(["dags", "list", "--repo", str(repo.path), "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["dag_id"], r["tasks"], r["fileloc"], r["commit"]) for r in rows] == [
        ("a", 1, "a.yaml", sha), ("b", 3, "b.yaml", sha)]
    assert all(len(r["version"]) == 12 for r in rows)


def test_list_needs_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["dags", "list", "--repo", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"leoflow: error: --repo {tmp_path}/nope: not a directory\n"
