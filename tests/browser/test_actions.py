"""The UI's actions against the whole system: ``leoflow standalone`` (server, scheduler, gRPC endpoint,
a local agent, the git sync) over a DAG repository made for the test.

Trigger with a param from the dialog and watch the run go green; pause and unpause; clear a failed
task and see its new try succeed; watch a running task's log grow; mark a run failed; push a DAG
change to git and see the new version and its code, without restarting anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests

from tests.browser.conftest import UI, Watch, login
from tests.browser.grid import wait_for_grid
from tests.browser.stack import Stack, free_port

pytestmark = pytest.mark.browser

PASSWORD = "standalone-test-pw"

GREET = """\
dag_id: greet
description: Greets with a param.
tags: [browser]
is_paused_upon_creation: false
params:
  name:
    default: world
    type: string
tasks:
  - task_id: hello
    command: ["echo", "Hello {{ params.name }}"]
  - task_id: bye
    upstream: [hello]
    command: ["echo", "bye {{ params.name }}"]
"""

SLOW = """\
dag_id: slow
description: Prints a line every 0.4 s for a while.
is_paused_upon_creation: false
tasks:
  - task_id: tick
    command: ["sh", "-c", "i=0; while [ $i -lt 150 ]; do i=$((i+1)); echo tick $i; sleep 0.4; done"]
"""

FAIL_ONCE = """\
dag_id: fail_once
description: Fails on its first try and succeeds once cleared.
is_paused_upon_creation: false
tasks:
  - task_id: flaky
    command:
      - sh
      - -c
      - if [ -e {marker} ]; then echo recovered on the new try; else touch {marker}; echo failing on purpose; exit 1; fi
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ui@test", "-c", "user.name=ui-test", *args], cwd=repo, check=True,
                   capture_output=True, timeout=30)


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 30.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    root = tmp_path_factory.mktemp("standalone")
    repo = root / "dags"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "greet.yaml").write_text(GREET)
    (repo / "slow.yaml").write_text(SLOW)
    (repo / "fail_once.yaml").write_text(FAIL_ONCE.replace("{marker}", str(root / "marker")))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial DAGs")
    home = root / "home"
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOFLOW_")}
    env.update({"LEOFLOW_HOME": str(home), "HOME": str(root), "LEOFLOW_ADMIN_PASSWORD": PASSWORD,
                "LEOFLOW_CACHE": os.environ.get("LEOFLOW_CACHE", ""), "LEOFLOW_DAGS__FETCH_INTERVAL": "1",
                "LEOFLOW_UI__AUTO_REFRESH_INTERVAL": "1"})
    log_path = root / "standalone.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "leoflow.cli.main", "standalone", "--port", str(port),
                                 "--grpc-port", str(grpc_port), "--dags-repo", str(repo)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        stack = Stack(home=home, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path, proc=proc)
        try:
            def dags_loaded() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"leoflow standalone exited early:\n{stack.log_tail()}")
                try:
                    creds = {"username": "admin", "password": PASSWORD}
                    tok = requests.post(stack.base_url + "/auth/token", json=creds, timeout=2).json()["access_token"]
                    dags = requests.get(stack.base_url + "/api/v2/dags", headers={"Authorization": f"Bearer {tok}"},
                                        timeout=2).json()["dags"]
                except (requests.RequestException, KeyError, ValueError):
                    return False
                return {d["dag_id"] for d in dags} >= {"greet", "slow", "fail_once"}

            wait_until("standalone to serve the DAGs", dags_loaded, timeout=90)
            yield stack, repo
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def live(standalone: tuple[Stack, Path], browser: Any) -> Iterator[UI]:
    stack, _ = standalone
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-US")
    context.set_default_timeout(20000)
    page = context.new_page()
    watch = Watch(stack.base_url)
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    page.on("pageerror", watch.on_page_error)
    ui = UI(stack, page, watch)
    login(ui, "admin", PASSWORD)
    try:
        yield ui
    finally:
        context.close()


def run_state(ui: UI, dag_id: str, run_id: str) -> str:
    return str(ui.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json()["state"])


def trigger_api(ui: UI, dag_id: str) -> str:
    resp = ui.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["dag_run_id"])


def state_badge(ui: UI, text: str) -> Any:
    """The run page header's state badge (``[data-testid=state-badge]``) showing ``text``."""
    return ui.page.locator("[data-testid=state-badge]").filter(visible=True, has_text=text).first


def ti(ui: UI, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1"
    return dict(ui.api("GET", path).json())


def test_trigger_with_a_param_from_the_dialog_turns_the_grid_green(live: UI) -> None:
    live.goto("/dags/greet", reload=True)
    live.page.locator("button[aria-label='Trigger Dag']").first.click()
    field = live.page.locator("input[name=element_name]")
    field.fill("Ada")
    live.shot("40_trigger_dialog")
    live.page.locator("[data-testid=trigger-dag-submit]").click()
    live.page.wait_for_url(re.compile(r"/dags/greet/runs/manual__"))
    run_id = unquote(live.page.url.rsplit("/runs/", 1)[1].split("/")[0])
    # The open page's grid turns green by itself (the UI polls while the run is active): the run's
    # bar and both cells are painted with the bundle's own success colour.
    wait_for_grid(live.page, "greet", run_id, "success", {"hello": "success", "bye": "success"})
    state_badge(live, "Success").wait_for()
    run = live.api("GET", f"/api/v2/dags/greet/dagRuns/{quote(run_id, safe='')}").json()
    assert run["state"] == "success" and run["conf"] == {"name": "Ada"} and run["triggered_by"] == "ui", run
    live.settle()
    live.check("41_triggered_run_success")
    live.goto(f"/dags/greet/runs/{quote(run_id, safe='')}/tasks/hello")
    live.wait_text("Hello Ada")
    live.settle()
    live.check("42_triggered_task_log")


def test_pause_and_unpause(live: UI) -> None:
    live.goto("/dags/greet", reload=True)
    live.wait_text("Latest Dag Version")
    switch = live.page.locator("[data-testid=toggle-pause]").first

    def paused() -> bool:
        return bool(live.api("GET", "/api/v2/dags/greet").json()["is_paused"])

    # The switch is the UI's "active" toggle: checked while the DAG is unpaused.
    def shows(state: str) -> None:
        wait_until(f"the switch to show {state}", lambda: switch.get_attribute("data-state") == state, timeout=10)

    assert not paused()
    shows("checked")
    switch.click()
    wait_until("the DAG to be paused", paused, timeout=10)
    shows("unchecked")
    live.shot("43_dag_paused")
    switch.click()
    wait_until("the DAG to be unpaused", lambda: not paused(), timeout=10)
    shows("checked")
    live.settle()
    live.check("44_dag_unpaused")


def test_clear_a_failed_task_and_see_a_new_try(live: UI) -> None:
    run_id = trigger_api(live, "fail_once")
    wait_until("fail_once to fail", lambda: run_state(live, "fail_once", run_id) == "failed")
    live.goto(f"/dags/fail_once/runs/{quote(run_id, safe='')}/tasks/flaky", reload=True)
    live.wait_text("failing on purpose")
    wait_for_grid(live.page, "fail_once", run_id, "failed", {"flaky": "failed"}, timeout=10)
    live.page.keyboard.press("Shift+C")  # the UI's "Clear Task Instance" shortcut
    live.page.get_by_role("button", name="Confirm").click()
    # The open page's grid goes from red to green by itself once the new try succeeds.
    wait_for_grid(live.page, "fail_once", run_id, "success", {"flaky": "success"})
    t = ti(live, "fail_once", run_id, "flaky")
    assert (t["state"], t["try_number"]) == ("success", 2), t
    live.page.reload()
    live.wait_text("recovered on the new try")
    live.wait_text("Task Tries")
    # The log panel offers both tries, the first one's log still readable.
    for n in (1, 2):
        live.page.locator(f"[data-testid=log-attempt-select-button-{n}]").wait_for(state="visible")
    assert live.page.get_by_text("failing on purpose").filter(visible=True).count() == 0  # try 2's log is shown
    live.page.locator("[data-testid=log-attempt-select-button-1]").click()
    live.wait_text("failing on purpose")
    tries = live.api("GET", f"/api/v2/dags/fail_once/dagRuns/{quote(run_id, safe='')}/taskInstances/flaky/-1/tries")
    assert [t["state"] for t in tries.json()["task_instances"]] == ["failed", "success"]
    live.settle()
    live.check("45_cleared_task_new_try")


def test_running_log_grows_then_mark_the_run_failed(live: UI) -> None:
    run_id = trigger_api(live, "slow")
    wait_until("tick to run", lambda: ti(live, "slow", run_id, "tick")["state"] == "running")
    live.goto(f"/dags/slow/runs/{quote(run_id, safe='')}/tasks/tick", reload=True)
    live.wait_text("tick 2")

    def lines() -> int:
        return int(live.page.get_by_text(re.compile(r"^tick \d+$")).count())

    first = wait_until("log lines", lines)
    wait_until("new log lines to arrive in the open page", lambda: lines() >= first + 5, timeout=20)
    live.settle(0.1)
    live.check("46_running_task_log_follows")

    live.goto(f"/dags/slow/runs/{quote(run_id, safe='')}", reload=True)
    live.wait_text("tick")
    wait_for_grid(live.page, "slow", run_id, "running", {"tick": "running"}, timeout=10)
    live.page.keyboard.press("Shift+F")  # the UI's "Mark Dag Run as failed" shortcut
    live.page.get_by_role("button", name="Confirm").click()
    # As Airflow does: the run fails and its running task instance with it; the page shows both.
    wait_for_grid(live.page, "slow", run_id, "failed", {"tick": "failed"}, timeout=10)
    state_badge(live, "Failed").wait_for()
    assert run_state(live, "slow", run_id) == "failed"
    live.settle()
    live.check("47_run_marked_failed")


def test_a_git_push_shows_the_new_version_and_its_code(live: UI, standalone: tuple[Stack, Path]) -> None:
    _, repo = standalone
    farewell = '  - task_id: farewell\n    upstream: [bye]\n    command: ["echo", "farewell"]\n'
    changed = GREET.replace("tasks:\n", "# version two: adds a farewell task\ntasks:\n") + farewell
    (repo / "greet.yaml").write_text(changed)
    git(repo, "commit", "-qam", "greet: add farewell")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True,
                         timeout=10).stdout.strip()
    versions = wait_until("the new DAG version",
                          lambda: [v for v in live.api("GET", "/api/v2/dags/greet/dagVersions").json()["dag_versions"]
                                   if v["bundle_version"] == sha], timeout=30)
    assert versions[0]["version_number"] == 2
    live.goto("/dags/greet/code", reload=True)
    live.wait_text("version two: adds a farewell task")
    live.wait_text("v2")
    live.settle()
    live.check("48_new_version_code")
    live.goto("/dags/greet")
    live.wait_text("farewell")  # the grid shows the new task row
    live.settle()
    live.check("49_new_version_grid")
