"""``/ui/dashboard/dag_stats`` with Airflow's semantics over several DAGs, read from the run projection.

Airflow (``routes/ui/dashboard.py``): ``active`` = non-stale, unpaused DAGs; ``failed`` = non-stale
DAGs whose run with the newest *non-null* logical date failed; ``running``/``queued`` = distinct
non-stale DAGs with at least one run in that state.
"""

from __future__ import annotations

from datetime import timedelta

from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, DagRunType
from tests.api.runs_helpers import get_ok


def _manual_run_without_logical_date(api, dag_id: str, run_id: str, state: str) -> None:
    at = api.clock()
    api.repos.runs.create(DagRun(dag_id=dag_id, run_id=run_id, run_type=DagRunType.MANUAL,
                                 state=DagRunState(state), run_after=at, dag_version_number=1, queued_at=at), [])


def test_dag_stats_follow_airflow_over_many_dags(api, client):
    now = api.clock()
    for dag_id in "abcde":
        api.seed_dag(dag_id)
    # a: newest logical date succeeded; a newer manual run without a logical date failed (ignored).
    api.seed_run("a", "a1", state="failed", run_after=now - timedelta(hours=2))
    api.seed_run("a", "a2", state="success", run_after=now - timedelta(hours=1))
    _manual_run_without_logical_date(api, "a", "a3", "failed")
    # b: paused (not active) but its newest run failed: still counted as failed, as in Airflow.
    api.seed_run("b", "b1", state="success", run_after=now - timedelta(hours=3))
    api.seed_run("b", "b2", state="failed", run_after=now - timedelta(minutes=5))
    api.repos.dags.set_paused("b", True)
    # c: one running and one queued run; d: two running runs (one DAG, counted once).
    api.seed_run("c", "c1", state="running", run_after=now - timedelta(minutes=3))
    api.seed_run("c", "c2", state="queued", run_after=now - timedelta(minutes=2))
    api.seed_run("d", "d1", state="running", run_after=now - timedelta(minutes=4))
    api.seed_run("d", "d2", state="running", run_after=now - timedelta(minutes=1))
    # e: stale (gone from the bundle): none of its runs count.
    api.seed_run("e", "e1", state="failed", run_after=now)
    api.seed_run("e", "e2", state="running", run_after=now - timedelta(minutes=1))
    api.seed_run("e", "e3", state="queued", run_after=now - timedelta(minutes=1))
    api.repos.dags.mark_stale(["e"], now)
    api.repos.runs.projection.refresh()

    stats = get_ok(client, "/ui/dashboard/dag_stats")
    assert stats == {"active_dag_count": 3, "failed_dag_count": 1, "running_dag_count": 2, "queued_dag_count": 1}

    # The counts agree with the repository's own per-DAG state counts (one source of truth).
    counts = api.repos.runs.counts_by_state(["a", "b", "c", "d"])
    assert stats["running_dag_count"] == sum(1 for c in counts.values() if c.get("running"))
    assert stats["queued_dag_count"] == sum(1 for c in counts.values() if c.get("queued"))

    # A new failed run with the newest logical date flips "a" to failed on the next poll.
    api.seed_run("a", "a4", state="failed", run_after=now + timedelta(minutes=1))
    api.repos.runs.projection.refresh()
    assert get_ok(client, "/ui/dashboard/dag_stats")["failed_dag_count"] == 2


def test_dag_stats_without_dags_or_runs(api, client):
    assert get_ok(client, "/ui/dashboard/dag_stats") == {
        "active_dag_count": 0, "failed_dag_count": 0, "running_dag_count": 0, "queued_dag_count": 0}
    api.seed_dag("lonely")
    assert get_ok(client, "/ui/dashboard/dag_stats")["active_dag_count"] == 1
