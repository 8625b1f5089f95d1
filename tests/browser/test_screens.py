"""Every screen of ``research/airflow_ui_endpoints.md`` in the unmodified Airflow 3.3.2 UI, on Leoflow.

Each screen must load with no API response >= 400 (except the commented allowlist), no console or
page error, no visible error box, and must show the seeded data (DAG ids, run states, log lines).
Screenshots land in artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.conftest import UI
from tests.browser.grid import assert_palette_is_the_bundles, read_grid

pytestmark = pytest.mark.browser

RunIds = dict[str, str]


def until(what: str, probe: Callable[[], Any], timeout: float = 10.0, seen: Callable[[], Any] | None = None) -> Any:
    """Poll the page (bounded): screens fill in as their queries answer. ``seen`` says what the page
    showed instead, for the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            shown = f"; the page shows {seen()!r}" if seen else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{shown}")
        time.sleep(0.2)


def table_rows(ui: UI) -> list[str]:
    return [" ".join(t.split()) for t in ui.page.locator("tbody tr").all_inner_texts()]


def etl_grid_matches_the_seed(ui: UI, ids: RunIds) -> None:
    """The grid paints each seeded run and task instance in its state's colour (a noted cell keeps
    its colour under the note corner): the colours decode back to the seeded states."""
    want = {
        ids["ok"]: {"run": "success", "tasks": {"extract": "success", "transform": "success", "load": "success"}},
        ids["failed"]: {"run": "failed", "tasks": {"extract": "success", "transform": "failed",
                                                   "load": "upstream_failed", "report": "upstream_failed"}},
        ids["running"]: {"run": "running", "tasks": {"extract": "success", "transform": "running", "load": "none",
                                                     "report": "none"}},
    }

    def shown() -> dict[str, Any]:
        return read_grid(ui.page, "etl").runs

    until(f"the grid's colours to show {want}", lambda: shown() == want, seen=shown)
    assert_palette_is_the_bundles(read_grid(ui.page, "etl"))


def home_stats(ui: UI, _ids: RunIds) -> None:
    """Dashboard counts from the store: etl's latest run is running, idle is paused; the last 24 h
    hold the failed and the running run with their 8 task instances."""
    want = {"Failed Dags": 0, "Running Dags": 1, "Active Dags": 1}

    def cards() -> dict[str, int]:
        out = {}
        for text in ui.page.locator("[data-testid=stats-card]").all_inner_texts():
            number, _, label = text.strip().partition("\n")
            if number.isdigit():
                out[label.strip()] = int(number)
        return out

    until(f"stats cards {want}", lambda: cards() == want, seen=cards)
    main = " ".join(ui.page.locator("[data-testid=main-content]").inner_text().split())
    for fact in ("1 Running 50.00% 0 Success 0.00% 1 Failed 50.00%", "2 Upstream Failed 25.00%", "1 Running 12.50%"):
        assert fact in main, f"home does not show {fact!r}: {main}"


def calendar_days(ui: UI, _ids: RunIds) -> None:
    """Today's cells carry the states of today's runs (the failed and the running one)."""

    def states() -> set[str]:
        return set(ui.page.locator("[data-testid=calendar-cell][data-has-data=true]").evaluate_all(
            "els => els.map(e => e.dataset.states)"))

    until("calendar cells for the failed and the running run", lambda: {"failed", "running"} <= states(), seen=states)


def rows(*wanted: tuple[str, ...]) -> Callable[[UI, RunIds], None]:
    """Each tuple's texts must all appear in one row of the screen's table."""

    def probe(ui: UI, ids: RunIds) -> None:
        need = [tuple(t.format(**ids) for t in w) for w in wanted]
        until(f"table rows with {need}", lambda: all(any(all(t in r for t in w) for r in table_rows(ui)) for w in need),
              seen=lambda: table_rows(ui))
    return probe


def no_probe(_ui: UI, _ids: RunIds) -> None:
    return None


@dataclass(frozen=True)
class Screen:
    name: str
    path: str  # may contain {failed}, {running}, {ok} run ids
    expect: tuple[str, ...]  # texts that prove real data is shown
    allowed_responses: Callable[[int, str, str], bool] = field(default=lambda s, m, p: False)
    allowed_console: Callable[[str], bool] = field(default=lambda text: False)
    error_boxes: int = 0
    probe: Callable[[UI, RunIds], None] = no_probe  # structural checks of the real data shown


def _config_forbidden(status: int, method: str, path: str) -> bool:
    # Deliberate: [server] expose_config is off, so /api/v2/config answers 403 exactly as Airflow
    # does; the Config page then shows its one error box saying so.
    return (status, method, path) == (403, "GET", "/api/v2/config")


def _config_forbidden_console(text: str) -> bool:
    # Chromium logs every failed resource load; this is the same deliberate 403 as above.
    return text == "Failed to load resource: the server responded with a status of 403 (Forbidden)"


SCREENS = (
    Screen("01_home", "/", ("Running Dags", "Failed Dags", "Pool Slots"), probe=home_stats),
    Screen("02_dags_list", "/dags", ("etl", "idle", "2 Dags")),
    Screen("03_dag_overview", "/dags/etl", ("Latest Dag Version", "Failed Run", "extract", "report"),
           probe=etl_grid_matches_the_seed),
    Screen("04_dag_runs_tab", "/dags/etl/runs", ("{failed}", "{running}", "manual"),
           probe=rows(("{running}", "Running"), ("{failed}", "Failed", "admin-user"), ("{ok}", "Success", "v1"))),
    Screen("05_dag_tasks_tab", "/dags/etl/tasks", ("transform", "ContainerTask")),
    Screen("06_dag_calendar_tab", "/dags/etl/calendar", ("Total Runs", "Week 1", "Planned"), probe=calendar_days),
    Screen("07_dag_audit_log_tab", "/dags/etl/events", ("trigger", "{failed}")),
    Screen("08_dag_code_tab", "/dags/etl/code", ("report: true",)),
    # The Code tab at an older version (the UI's own ?version_number= selection): v1's source and commit.
    Screen("08b_dag_code_tab_v1", "/dags/etl/code?version_number=1", ("# etl v1", "a" * 40)),
    # Airflow 3.3.2 shows a preset by its cron expression (timetable_summary), as we do.
    Screen("09_dag_details_tab", "/dags/etl/details", ("Nightly ETL", "0 0 * * *")),
    Screen("10_dag_run", "/dags/etl/runs/{failed}", ("Upstream Failed", "transform", "investigating"),
           probe=etl_grid_matches_the_seed),
    Screen("11_task_instance_logs", "/dags/etl/runs/{failed}/tasks/transform",
           ("column 'amount' is not numeric", "transform try 2 starting")),
    Screen("12_task_instance_details_tab", "/dags/etl/runs/{failed}/tasks/transform/details",
           ("agent-1", "failed")),
    Screen("13_task_instance_xcom_tab", "/dags/etl/runs/{ok}/tasks/extract/xcom", ("return_value",)),
    Screen("14_task_overview_all_runs", "/dags/etl/tasks/transform", ("CommandTask", "Failed Task Instance")),
    Screen("15_browse_audit_log", "/events", ("trigger", "etl")),
    Screen("16_browse_xcoms", "/xcoms", ("row_count", "1187")),
    # Leoflow has no deadlines, human-in-the-loop, jobs table rows (no scheduler in this stack) or
    # assets: the answered empty state, not just the heading that renders while loading.
    Screen("17_browse_deadlines", "/deadlines", ("Deadlines", "No Deadlines found")),
    Screen("18_browse_required_actions", "/required_actions", ("Required Actions", "No Required Actions found")),
    Screen("19_browse_dag_runs", "/dag_runs", ("{failed}", "etl"),
           probe=rows(("etl", "{running}", "Running"), ("etl", "{failed}", "Failed"), ("etl", "{ok}", "Success"))),
    Screen("20_browse_task_instances", "/task_instances", ("transform", "extract"),
           probe=rows(("transform Running",), ("transform Failed",), ("report No Status",), ("extract Success",))),
    Screen("21_browse_jobs", "/jobs", ("Jobs", "No Jobs found")),
    Screen("22_assets", "/assets", ("Assets", "No Assets found")),
    Screen("23_admin_variables", "/variables", ("warehouse_schema", "analytics")),
    Screen("24_admin_pools", "/pools", ("batch", "default_pool")),
    Screen("25_admin_connections", "/connections", ("warehouse", "postgres")),
    Screen("26_admin_providers", "/providers", ("Providers", "python-nomad", "gitpython")),
    Screen("27_admin_plugins", "/plugins", ("leoflow",)),
    Screen("28_admin_config", "/configs", ("403",), allowed_responses=_config_forbidden,
           allowed_console=_config_forbidden_console, error_boxes=1),
    Screen("29_leoflow_agents", "/plugin/leoflow-agents", ("build-01", "transform")),
    Screen("30_leoflow_executors", "/plugin/leoflow-executors", ("default", "agent-1")),
    Screen("31_leoflow_git", "/plugin/leoflow-git", ("bbbbbbbbbbbb", "v2")),
)


@pytest.fixture(scope="module")
def run_ids(ui: UI) -> RunIds:
    runs = ui.api("GET", "/api/v2/dags/etl/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"]
    ok, failed, running = (r["dag_run_id"] for r in runs)
    return {"ok": ok, "failed": failed, "running": running}


@pytest.mark.parametrize("screen", SCREENS, ids=[s.name for s in SCREENS])
def test_screen(ui: UI, run_ids: RunIds, screen: Screen) -> None:
    path = screen.path.format(**{k: quote(v, safe="") for k, v in run_ids.items()})
    ui.goto(path)
    if screen.name.startswith(("29_", "30_", "31_")):  # Leoflow's pages render inside the plugin iframe
        frame = ui.page.frame_locator("iframe")
        for text in screen.expect:
            frame.get_by_text(text).first.wait_for(state="visible")
    else:
        for text in screen.expect:
            ui.wait_text(text.format(**run_ids))
    screen.probe(ui, run_ids)
    ui.settle()
    ui.check(screen.name, allowed_responses=screen.allowed_responses, allowed_console=screen.allowed_console,
             error_boxes_expected=screen.error_boxes)


def test_menus_and_graph_grid_toggle(ui: UI, run_ids: RunIds) -> None:
    ui.goto("/")
    ui.wait_text("Running Dags")
    ui.page.get_by_role("button", name="Browse").click()
    ui.wait_text("Audit Log")
    ui.shot("32_menu_browse")
    ui.page.keyboard.press("Escape")
    ui.page.get_by_role("button", name="Admin").click()
    ui.wait_text("Connections")
    ui.shot("33_menu_admin")
    ui.page.keyboard.press("Escape")
    ui.page.get_by_role("button", name="Plugins").click()
    ui.page.get_by_role("menuitem", name="Leoflow").hover()
    ui.page.locator("a[role=menuitem][href$='/plugin/leoflow-agents']").click()
    # Airflow 3.3.2 keeps the address bar in step with a same-origin nav view's iframe: once the
    # iframe has loaded /leoflow/agents the URL becomes /plugin/leoflow-agents/leoflow/agents.
    ui.page.wait_for_url(re.compile(re.escape(ui.base + "/plugin/leoflow-agents") + r"(/leoflow/agents)?$"))
    ui.page.frame_locator("iframe").get_by_text("build-01").wait_for(state="visible")
    ui.settle()
    ui.check("34_menu_plugins_to_agents")

    ui.goto("/dags/etl")
    ui.wait_text("Latest Dag Version")
    ui.page.locator("button[aria-label^='Show Graph']").click()
    ui.page.locator(".react-flow__node").first.wait_for(state="visible")
    ui.settle()
    nodes = ui.page.locator(".react-flow__node").all_inner_texts()
    assert any("transform" in n for n in nodes) and any("report" in n for n in nodes), nodes
    assert ui.page.locator(".react-flow__edge").count() == 3
    ui.check("35_dag_graph_view")
    ui.page.locator("button[aria-label^='Show Grid']").click()
    ui.wait_text("extract")
    etl_grid_matches_the_seed(ui, run_ids)
    ui.settle()
    ui.check("36_dag_grid_view")
