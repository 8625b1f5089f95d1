"""DAGs, runs and tasks driven through the installed `leoflow` against a real standalone."""

from __future__ import annotations

import json
import re
import subprocess
import time

import yaml

from tests.cli.conftest import LEOFLOW, Cli


def _trigger(cli: Cli, dag_id: str, *extra: str, code: int = 0) -> str:
    r = cli("dags", "trigger", dag_id, "-o", "json", *extra)
    assert r.code == code, r
    return str(json.loads(r.out)["dag_run_id"])


def test_dags_list_in_every_format(cli: Cli) -> None:
    r = cli("dags", "list", "--tag", "cli")
    assert r.code == 0, r
    header, *rows = r.out.splitlines()
    assert header.split()[:3] == ["DAG_ID", "PAUSED", "SCHEDULE"]
    assert [row.split()[0] for row in rows] == ["cli_fail", "cli_ok", "cli_paused", "cli_slow"]
    assert "\033[" not in r.out  # no colour when stdout is not a terminal
    as_json = json.loads(cli("dags", "list", "--tag", "other", "-o", "json").out)
    assert [d["dag_id"] for d in as_json] == ["cli_paused"] and as_json[0]["is_paused"] is True
    as_yaml = yaml.safe_load(cli("dags", "list", "--pattern", "cli_o", "-o", "yaml").out)
    assert [d["dag_id"] for d in as_yaml] == ["cli_ok"]
    paused = json.loads(cli("dags", "list", "--paused", "--tag", "cli", "-o", "json").out)
    assert [d["dag_id"] for d in paused] == ["cli_paused"]


def test_tables_fit_the_terminal_width(cli: Cli) -> None:
    r = cli("dags", "list", "--tag", "cli", COLUMNS="50")
    assert r.code == 0, r
    assert all(len(line) <= 50 for line in r.out.splitlines()), r.out
    assert "…" in r.out


def test_offline_list_still_works_next_to_the_server_list(cli: Cli) -> None:
    from tests.cli.conftest import DAGS

    repo = cli.tmp / "offline-repo"
    repo.mkdir(exist_ok=True)
    (repo / "cli_ok.yaml").write_text(DAGS["cli_ok.yaml"])
    r = cli("dags", "list", "--repo", str(repo), "-o", "json", LEOFLOW_SERVER="http://127.0.0.1:9")
    assert r.code == 0, r
    assert [d["dag_id"] for d in json.loads(r.out)] == ["cli_ok"]


def test_show_pause_unpause(cli: Cli) -> None:
    r = cli("dags", "show", "cli_ok")
    assert r.code == 0, r
    assert re.search(r"^dag_id\s+cli_ok$", r.out, re.M) and "TASK_ID" in r.out and "second" in r.out
    shown = json.loads(cli("dags", "show", "cli_ok", "-o", "json").out)
    assert [t["task_id"] for t in shown["tasks"]] == ["first", "second"]
    r = cli("dags", "pause", "cli_paused")
    assert r.code == 0 and r.out.strip() == "cli_paused: paused", r
    r = cli("dags", "unpause", "cli_paused", "-o", "json")
    assert r.code == 0 and json.loads(r.out)[0]["is_paused"] is False, r
    assert cli("dags", "pause", "cli_paused").code == 0


def test_trigger_wait_success_shows_progress_and_tasks(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_ok", "--conf", '{"who": "cli"}', "--wait", "--wait-timeout", "60")
    assert r.code == 0, r
    # Not a terminal: plain progress lines on stderr, one per change, ending with the final state.
    progress = [line for line in r.err.splitlines() if " done · " in line]
    assert progress and "success" in progress[-1] and "2/2 done" in progress[-1], r.err
    assert "\r" not in r.err
    assert re.search(r"^first\s+success\s+1", r.out, re.M) and re.search(r"^second\s+success", r.out, re.M), r.out
    assert re.search(r"^run manual__\S+ of cli_ok: success in [\d.]+s$", r.out, re.M), r.out


def test_trigger_wait_failing_run_exits_1(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_fail", "--wait", "--wait-timeout", "60")
    assert r.code == 1, r
    assert re.search(r"^boom\s+failed", r.out, re.M) and re.search(r"^after\s+upstream_failed", r.out, re.M), r.out
    assert "(failed: boom; upstream_failed: after)" in r.err and "leoflow tasks logs cli_fail" in r.err, r.err
    assert "Traceback" not in r.err


def test_trigger_wait_json_output_for_scripts(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_ok", "--wait", "-o", "json")
    assert r.code == 0, r
    body = json.loads(r.out)
    assert body["state"] == "success" and {t["task_id"] for t in body["task_instances"]} == {"first", "second"}


def test_trigger_of_a_paused_dag_warns(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_paused", "--run-id", "paused_run_1")
    assert r.code == 0, r
    assert "triggered cli_paused run paused_run_1" in r.out and "is paused" in r.err
    r = cli("tasks", "logs", "cli_paused", "paused_run_1", "only")
    assert r.code == 0 and r.out.count("No logs available yet") == 1, r
    r = cli("runs", "mark", "cli_paused", "paused_run_1", "failed")
    assert r.code == 0 and "failed" in r.out, r


def test_runs_list_show_mark_clear(cli: Cli) -> None:
    run_id = _trigger(cli, "cli_ok", "--run-id", "cli_runs_test", "--wait")
    r = cli("runs", "list", "cli_ok", "-o", "json")
    runs = json.loads(r.out)
    assert run_id in [x["dag_run_id"] for x in runs]
    r = cli("runs", "list", "--state", "failed", "-o", "json")
    assert {x["state"] for x in json.loads(r.out)} <= {"failed"}
    r = cli("runs", "show", "cli_ok", run_id)
    assert r.code == 0 and re.search(r"^state\s+success$", r.out, re.M) and "first" in r.out, r
    r = cli("runs", "clear", "cli_ok", run_id, "--dry-run")
    assert r.code == 0 and "2 task instance(s) would be cleared" in r.err, r
    r = cli("runs", "mark", "cli_ok", run_id, "failed", "--note", "marked by the cli test")
    assert r.code == 0, r
    shown = json.loads(cli("runs", "show", "cli_ok", run_id, "-o", "json").out)
    assert shown["state"] == "failed" and shown["note"] == "marked by the cli test"
    r = cli("runs", "clear", "cli_ok", run_id)
    assert r.code == 0 and "cleared run" in r.out, r
    deadline = time.monotonic() + 60
    while json.loads(cli("runs", "show", "cli_ok", run_id, "-o", "json").out)["state"] != "success":
        assert time.monotonic() < deadline, "the cleared run did not run again"
        time.sleep(0.5)


def test_tasks_list_logs_mark_clear(cli: Cli) -> None:
    r = cli("tasks", "list", "cli_fail")
    assert r.code == 0 and "boom" in r.out and "after" in r.out, r
    run_id = _trigger(cli, "cli_fail", "--run-id", "cli_tasks_test", "--wait", code=1)
    tis = json.loads(cli("tasks", "list", "cli_fail", run_id, "-o", "json").out)
    assert {t["task_id"]: t["state"] for t in tis} == {"boom": "failed", "after": "upstream_failed"}
    r = cli("tasks", "logs", "cli_fail", run_id, "boom")
    assert r.code == 0, r
    assert "about to fail" in r.out and "broken" in r.out and "exit code 3" in r.out
    r = cli("tasks", "logs", "cli_fail", run_id, "boom", "-o", "json")
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert any(line["event"] == "broken" and line["level"] == "error" for line in lines)
    r = cli("tasks", "logs", "cli_fail", run_id, "boom", "--try", "7")
    assert r.code == 1 and "does not exist" in r.err, r
    r = cli("tasks", "clear", "cli_fail", run_id, "boom", "--downstream", "--dry-run")
    assert r.code == 0 and "2 task instance(s) would be cleared" in r.err, r
    r = cli("tasks", "mark", "cli_fail", run_id, "boom", "success")
    assert r.code == 0 and "marked success" in r.out, r
    tis = json.loads(cli("tasks", "list", "cli_fail", run_id, "-o", "json").out)
    assert {t["task_id"]: t["state"] for t in tis}["boom"] == "success"


def test_logs_follow_streams_a_running_task_until_it_ends(cli: Cli) -> None:
    run_id = _trigger(cli, "cli_slow")
    proc = subprocess.Popen([str(LEOFLOW), "tasks", "logs", "cli_slow", run_id, "ticker", "-f"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    for line in proc.stdout:
        seen.append((time.monotonic() - start, line.rstrip("\n")))
    proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    ticks = [(t, line) for t, line in seen if re.search(r"tick \d$", line)]
    assert [line.rsplit(" ", 1)[1] for _, line in ticks] == ["1", "2", "3", "4", "5", "6"], seen
    # Followed live: the first tick arrived well before the last one was written.
    assert ticks[-1][0] - ticks[0][0] > 1.0, ticks
    assert "task succeeded" in seen[-1][1]
