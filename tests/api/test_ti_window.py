"""The DAG page's poll of every TI in a run_after window (``/dags/{dag}/dagRuns/~/taskInstances``).

Served from the run projection's window and cached TI snapshots; these tests hold it to what the
per-run listings answer (boundaries, filters, order, paging) and to fresh answers after clears
and after writes by another process.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from leoflow.domain.states import TaskInstanceState
from leoflow.store.repos import Repositories
from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import assert_ti_items, get_ok

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
TASKS = ("extract", "transform", "load")


def _iso(at: datetime) -> str:
    return quote(at.isoformat().replace("+00:00", "Z"))


def _seed(api) -> None:
    api.seed_dag("etl", tasks=TASKS)
    api.seed_dag("other", tasks=TASKS)
    for h in range(6):
        failed = h % 2 == 1
        api.seed_run("etl", f"r{h}", state="failed" if failed else "success", run_after=T0 + timedelta(hours=h),
                     ti_states={"extract": "success", "transform": "failed" if failed else "success",
                                "load": "upstream_failed" if failed else "success"})
        api.seed_run("other", f"r{h}", state="failed", run_after=T0 + timedelta(hours=h),
                     ti_states={"extract": "failed", "transform": "upstream_failed", "load": "upstream_failed"})
    for h in range(4):  # the scheduler compacts finished runs; the rest stay live keys
        assert api.repos.runs.compact("etl", f"r{h}")


def _window(client, gte: datetime, lte: datetime, extra: str = "") -> dict:
    return get_ok(client, f"/api/v2/dags/etl/dagRuns/~/taskInstances?run_after_gte={_iso(gte)}"
                          f"&run_after_lte={_iso(lte)}{extra}")


def _pairs(body: dict) -> list[tuple[str, str]]:
    return [(t["dag_run_id"], t["task_id"]) for t in body["task_instances"]]


def test_window_is_inclusive_and_equals_the_per_run_listings(api, client) -> None:
    _seed(api)
    body = _window(client, T0 + timedelta(hours=1), T0 + timedelta(hours=4), "&order_by=-run_after&limit=100")
    assert_ti_items(body)
    expected = []
    for h in (4, 3, 2, 1):  # both bounds inclusive, only the named DAG
        per_run = get_ok(client, f"/api/v2/dags/etl/dagRuns/r{h}/taskInstances?order_by=-run_after")
        expected += _pairs(per_run)
    assert _pairs(body) == expected and body["total_entries"] == 12
    assert {t["dag_id"] for t in body["task_instances"]} == {"etl"}

    failed = _window(client, T0 + timedelta(hours=1), T0 + timedelta(hours=4), "&state=failed&order_by=-run_after")
    assert _pairs(failed) == [("r3", "transform"), ("r1", "transform")] and failed["total_entries"] == 2
    # paging keeps total_entries of the whole window
    page = _window(client, T0, T0 + timedelta(hours=5), "&order_by=run_after&limit=4&offset=2")
    assert page["total_entries"] == 18
    assert _pairs(page) == [("r0", "transform"), ("r1", "extract"), ("r1", "load"), ("r1", "transform")]
    # exclusive bounds, and a window with nothing in it
    gt = get_ok(client, f"/api/v2/dags/etl/dagRuns/~/taskInstances?run_after_gt={_iso(T0 + timedelta(hours=4))}"
                        f"&run_after_lt={_iso(T0 + timedelta(hours=6))}")
    assert {t["dag_run_id"] for t in gt["task_instances"]} == {"r5"}
    assert _window(client, T0 + timedelta(days=2), T0 + timedelta(days=3))["total_entries"] == 0
    # the wildcard DAG spans both DAGs
    both = get_ok(client, f"/api/v2/dags/~/dagRuns/~/taskInstances?run_after_gte={_iso(T0)}"
                          f"&run_after_lte={_iso(T0)}&limit=100")
    assert {(t["dag_id"], t["dag_run_id"]) for t in both["task_instances"]} == {("etl", "r0"), ("other", "r0")}


def test_polls_see_a_clear_of_a_packed_run_at_once(api, client) -> None:
    _seed(api)
    window = (T0, T0 + timedelta(hours=5))
    before = _window(client, *window, "&state=failed")
    assert {r for r, _ in _pairs(before)} == {"r1", "r3", "r5"}
    _window(client, *window, "&state=failed")  # a second poll: served from cached snapshots
    resp = client.simulate_post("/api/v2/dags/etl/clearTaskInstances",
                                json={"dry_run": False, "dag_run_id": "r1", "only_failed": True})
    assert resp.status_code == 200, resp.text
    after = _window(client, *window, "&state=failed")
    assert {r for r, _ in _pairs(after)} == {"r3", "r5"}
    cleared = _window(client, *window, "&task_id=transform&order_by=run_after")
    assert [t["state"] for t in cleared["task_instances"]][1] is None


def test_polls_see_another_processes_writes(api, client) -> None:
    _seed(api)
    window = (T0, T0 + timedelta(hours=8))
    assert _window(client, *window)["total_entries"] == 18
    other = Repositories.open(api.repos.runs.store, root=api.repos.runs.ks.root)
    try:
        # a note on a TI of a packed run: unpacking rewrites the run record, and the server keeps a
        # finished run's compacted TIs only while that record is unchanged (ADR 0066), so the note
        # shows once the projection has the new record (one watch round)
        ti = other.task_instances.require(TIKey("etl", "r2", "load"))
        other.task_instances.transition(ti, dataclasses.replace(ti.record, note="looked at it"))
        touched = other.runs.get("etl", "r2")
        assert touched is not None and api.repos.projection.wait_for(touched.index, timeout=10)
        notes = {(t["dag_run_id"], t["task_id"]): t["note"] for t in _window(client, *window)["task_instances"]}
        assert notes[("r2", "load")] == "looked at it"
        # a new run in the window, created elsewhere: visible once the projection's watch has it
        from tests.api.seed import seed_run

        class Other:
            repos = other
            clock = api.clock

        created = seed_run(Other, "etl", "r7", state="running", run_after=T0 + timedelta(hours=7),
                           ti_states={"extract": "running", "transform": None, "load": None})
        assert api.repos.projection.wait_for(created.index, timeout=10)
        body = _window(client, *window, "&state=running")
        assert _pairs(body) == [("r7", "extract")]
        # a TI transition of that live run elsewhere shows on the next poll
        ti = other.task_instances.require(TIKey("etl", "r7", "extract"))
        other.task_instances.transition(ti, dataclasses.replace(ti.record, state=TaskInstanceState.SUCCESS))
        assert _window(client, *window, "&state=running")["total_entries"] == 0
        # a run deleted elsewhere leaves the window
        other.runs.delete("etl", "r0")
        for _ in range(200):
            if _window(client, *window)["total_entries"] == 18:
                break
            api.repos.projection.wait_for(api.repos.projection.index + 1, timeout=0.05)
        assert {r for r, _ in _pairs(_window(client, *window, "&limit=100"))} == {f"r{h}" for h in (1, 2, 3, 4, 5, 7)}
    finally:
        other.close()
