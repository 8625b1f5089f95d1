"""`leoflow standalone` end to end: real processes, real sockets, a DAG repo in git.

Every task appends to a marker file named after its task and try number, so "ran exactly once per
try" is checked on disk, not inferred from the API.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, DagRepo, Standalone, start_standalone, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Standalone, DagRepo]]:
    """One standalone for the failure-injection tests (its supervisor restarts what they kill).

    A short leader session lets a restarted scheduler take over in seconds, not 2 x 15 s.
    """
    base = tmp_path_factory.mktemp("shared")
    repo = DagRepo(base / "dags-repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.commit({"README.md": "e2e\n"}, "init")
    (base / "home").mkdir()
    sa = start_standalone(base / "leoflow-home", repo.path, extra_env={
        "HOME": str(base / "home"), "LEOFLOW_STORE__SESSION_TTL_MIN": "1", "LEOFLOW_SCHEDULER__LEADER_TTL": "2",
        "LEOFLOW_SCHEDULER__LOCK_DELAY": "0.5"})
    try:
        yield sa, repo
    finally:
        sa.stop()


def _mark(marks: Path) -> str:
    """A shell line that records one execution of this try, from the env the agent gives every task."""
    return f'echo x >> "{marks}/$AIRFLOW_CTX_TASK_ID.$AIRFLOW_CTX_TRY_NUMBER"'


def _runs(marks: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in sorted(marks.iterdir())}


def _dag(dag_id: str, tasks: str, extra: str = "") -> str:
    return f"dag_id: {dag_id}\nis_paused_upon_creation: false\n{extra}tasks:\n{tasks}"


def test_standalone_runs_a_committed_dag_retries_and_times_out(dag_repo: DagRepo, standalone_factory,
                                                               tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    pidfile = tmp_path / "sleeper.pid"
    dag_repo.commit({
        "chain.yaml": _dag("e2e_chain", f"""\
  - task_id: first
    command: ["sh", "-c", '{_mark(marks)}; echo "{{{{ run_id }}}}"; echo "[1, 2]" > "$LEOFLOW_XCOM_RETURN"']
  - task_id: second
    upstream: [first]
    command: ["sh", "-c", '{_mark(marks)}']
"""),
        "retry.yaml": _dag("e2e_retry", f"""\
  - task_id: flaky
    retries: 2
    retry_delay: 1s
    command: ["sh", "-c", '{_mark(marks)}; test "$AIRFLOW_CTX_TRY_NUMBER" -ge 2']
"""),
        "timeout.yaml": _dag("e2e_timeout", f"""\
  - task_id: sleeper
    execution_timeout: 2s
    command: ["sh", "-c", '{_mark(marks)}; sleep 60 & echo $! > {pidfile}; wait']
"""),
        "rules.yaml": _dag("e2e_rules", f"""\
  - task_id: boom
    command: ["sh", "-c", '{_mark(marks)}; exit 1']
  - task_id: on_failure
    upstream: [boom]
    trigger_rule: one_failed
    command: ["sh", "-c", '{_mark(marks)}']
  - task_id: cleanup
    upstream: [boom]
    trigger_rule: all_done
    command: ["sh", "-c", '{_mark(marks)}']
  - task_id: needs_one_success
    upstream: [boom]
    trigger_rule: none_failed_min_one_success
    command: ["sh", "-c", '{_mark(marks)}']
  - task_id: normal
    upstream: [boom]
    command: ["sh", "-c", '{_mark(marks)}']
"""),
    })
    sa: Standalone = standalone_factory(dag_repo)
    assert "Leoflow is running: UI http://127.0.0.1:" in sa.text()
    assert "Admin user: admin (password from LEOFLOW_ADMIN_PASSWORD)" in sa.text()
    assert PASSWORD not in sa.text()
    api = sa.api

    api.wait_dag("e2e_chain")
    run_id = api.trigger("e2e_chain")
    assert api.wait_run("e2e_chain", run_id)["state"] == "success"
    tis = api.task_instances("e2e_chain", run_id)
    assert {t: ti["state"] for t, ti in tis.items()} == {"first": "success", "second": "success"}
    logs = api.session.get(f"{api.base}/api/v2/dags/e2e_chain/dagRuns/{run_id}/taskInstances/first/logs/1",
                           headers={"Accept": "application/x-ndjson"}, timeout=10)
    assert logs.status_code == 200 and run_id in logs.text
    xcom = api.get(f"/api/v2/dags/e2e_chain/dagRuns/{run_id}/taskInstances/first/xcomEntries/return_value")
    assert xcom["value"] in ([1, 2], "[1, 2]")

    api.wait_dag("e2e_retry")
    retry_run = api.trigger("e2e_retry")
    assert api.wait_run("e2e_retry", retry_run)["state"] == "success"
    assert api.task_instances("e2e_retry", retry_run)["flaky"]["try_number"] == 2

    api.wait_dag("e2e_timeout")
    timeout_run = api.trigger("e2e_timeout")
    assert api.wait_run("e2e_timeout", timeout_run)["state"] == "failed"
    assert api.task_instances("e2e_timeout", timeout_run)["sleeper"]["state"] == "failed"
    child = int(pidfile.read_text())
    wait_for(lambda: not Path(f"/proc/{child}").exists()
             or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", 10, "the timed-out process to die")

    api.wait_dag("e2e_rules")
    rules_run = api.trigger("e2e_rules")
    assert api.wait_run("e2e_rules", rules_run)["state"] == "failed"
    assert {t: ti["state"] for t, ti in api.task_instances("e2e_rules", rules_run).items()} == {
        "boom": "failed", "on_failure": "success", "cleanup": "success",
        "needs_one_success": "upstream_failed", "normal": "upstream_failed"}

    assert _runs(marks) == {"first.1": 1, "second.1": 1, "flaky.1": 1, "flaky.2": 1, "sleeper.1": 1,
                            "boom.1": 1, "on_failure.1": 1, "cleanup.1": 1}

    # A second start reuses the state: same DAGs, same runs, no new password.
    assert sa.stop() == 0
    assert "Stopped." in sa.text()
    again = standalone_factory(dag_repo)
    assert again.api.get(f"/api/v2/dags/e2e_chain/dagRuns/{run_id}")["state"] == "success"


def test_agent_killed_mid_task_is_retried_and_no_try_runs_twice(shared: tuple[Standalone, DagRepo],
                                                                tmp_path: Path) -> None:
    sa, dag_repo = shared
    marks = tmp_path / "marks"
    marks.mkdir()
    gate = tmp_path / "gate"
    dag_repo.commit({"victim.yaml": _dag("e2e_victim", f"""\
  - task_id: victim
    retries: 1
    retry_delay: 1s
    command: ["sh", "-c", '{_mark(marks)}; if [ "$AIRFLOW_CTX_TRY_NUMBER" -lt 2 ]; then sleep 60; fi']
""")})
    sa.api.wait_dag("e2e_victim")
    run_id = sa.api.trigger("e2e_victim")
    wait_for(lambda: (marks / "victim.1").exists(), 60, "the first try to start")
    old = sa.kill_child("agent")
    sa.wait_child_restarted("agent", old)
    assert sa.api.wait_run("e2e_victim", run_id)["state"] == "success"
    assert _runs(marks) == {"victim.1": 1, "victim.2": 1}
    assert not gate.exists()


def test_scheduler_killed_mid_run_completes_without_double_execution(shared: tuple[Standalone, DagRepo],
                                                                     tmp_path: Path) -> None:
    sa, dag_repo = shared
    marks = tmp_path / "marks"
    marks.mkdir()
    tasks = "".join(
        f"""\
  - task_id: t{i}
    {"upstream: [t" + str(i - 1) + "]" if i else ""}
    command: ["sh", "-c", '{_mark(marks)}; sleep 0.3']
""" for i in range(8))
    dag_repo.commit({"long.yaml": _dag("e2e_long", tasks)})
    sa.api.wait_dag("e2e_long")
    run_id = sa.api.trigger("e2e_long")
    wait_for(lambda: (marks / "t2.1").exists(), 60, "the run to be under way")
    old = sa.kill_child("scheduler")
    sa.wait_child_restarted("scheduler", old)
    assert sa.api.wait_run("e2e_long", run_id, timeout=120)["state"] == "success"
    assert _runs(marks) == {f"t{i}.1": 1 for i in range(8)}


def test_link_drop_while_a_task_finishes_reports_exactly_once(shared: tuple[Standalone, DagRepo],
                                                              tmp_path: Path) -> None:
    sa, dag_repo = shared
    marks = tmp_path / "marks"
    marks.mkdir()
    gate = tmp_path / "gate"
    dag_repo.commit({"linkdrop.yaml": _dag("e2e_linkdrop", f"""\
  - task_id: slow
    command: ["sh", "-c", '{_mark(marks)}; while [ ! -e {gate} ]; do sleep 0.05; done']
  - task_id: after
    upstream: [slow]
    command: ["sh", "-c", '{_mark(marks)}']
""")})
    sa.api.wait_dag("e2e_linkdrop")
    run_id = sa.api.trigger("e2e_linkdrop")
    wait_for(lambda: (marks / "slow.1").exists(), 60, "the task to start")
    # Drop the link by killing the gRPC endpoint; the task finishes while it is down.
    rpc = sa.child_pid("agentrpc")
    os.kill(rpc, signal.SIGSTOP)
    try:
        gate.touch()
        time.sleep(1.0)
    finally:
        os.kill(rpc, signal.SIGKILL)
        os.kill(rpc, signal.SIGCONT)
    sa.wait_child_restarted("agentrpc", rpc)
    assert sa.api.wait_run("e2e_linkdrop", run_id)["state"] == "success"
    tries = sa.api.tries("e2e_linkdrop", run_id, "slow")
    assert [t["try_number"] for t in tries] == [1]
    assert _runs(marks) == {"slow.1": 1, "after.1": 1}


def test_config_file_reaches_every_child(dag_repo: DagRepo, standalone_factory, tmp_path: Path) -> None:
    """``--config`` is what the children read: the DAG repository named only in the file is synced."""
    dag_repo.commit({"from_config.yaml": _dag("e2e_from_config", "  - task_id: t\n    command: [\"true\"]\n")})
    config = tmp_path / "leoflow.toml"
    config.write_text(f'[dags]\nrepo = "{dag_repo.path}"\nfetch_interval = 1.0\n')
    sa: Standalone = standalone_factory(None, args=["--config", str(config)])
    assert sa.api.wait_dag("e2e_from_config", timeout=60)["dag_id"] == "e2e_from_config"
