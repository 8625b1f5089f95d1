"""Runs: atomic creation with TIs, CAS updates, the active marker, listing semantics, deletion."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from leoflow.domain.records import TaskInstance
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.store.port import Set
from leoflow.store.repos import AlreadyExists, Conflict, NotFound, Repositories, RunQuery, TIKey
from tests.store.repos.conftest import T0, make_run, make_tis


def test_create_run_with_tis_is_atomic_and_create_only(repos: Repositories) -> None:
    run = make_run()
    created = repos.runs.create(run, make_tis(run, 3))
    assert created.index > 0 and created.record == run
    assert [t.record.task_id for t in repos.task_instances.list_for_run("etl", run.run_id)] == [
        "task_000", "task_001", "task_002"]
    # a second create with the same id fails and changes nothing (not even TIs)
    other = replace(run, conf={"other": True})
    with pytest.raises(AlreadyExists, match="already exists"):
        repos.runs.create(other, [*make_tis(run, 3), TaskInstance("etl", run.run_id, "extra")])
    assert repos.runs.require("etl", run.run_id).record.conf == {"n": 0}
    assert len(repos.task_instances.list_for_run("etl", run.run_id)) == 3


def test_create_refuses_tis_of_another_run(repos: Repositories) -> None:
    run = make_run()
    with pytest.raises(ValueError, match="belongs to run"):
        repos.runs.create(run, [TaskInstance("etl", "other", "t")])
    assert repos.runs.get("etl", run.run_id) is None


def test_big_dag_is_created_in_chunks_with_the_run_last(repos: Repositories) -> None:
    run = make_run()
    tis = make_tis(run, 150)
    repos.runs.create(run, tis)
    assert len(repos.task_instances.list_for_run("etl", run.run_id)) == 150
    with pytest.raises(AlreadyExists):
        repos.runs.create(run, tis)


def test_ids_with_odd_characters_round_trip(repos: Repositories) -> None:
    run = replace(make_run(), dag_id="my.dag-1", run_id="manual__2026-01-01T00:00:00+00:00/x y ..")
    repos.runs.create(run, [TaskInstance(run.dag_id, run.run_id, "tâche.1")])
    assert repos.runs.require(run.dag_id, run.run_id).record == run
    assert repos.task_instances.require(TIKey(run.dag_id, run.run_id, "tâche.1")).record.task_id == "tâche.1"
    assert [r.record.run_id for r in repos.runs.active()] == [run.run_id]


def test_update_is_compare_and_set_and_keeps_the_active_marker_in_step(repos: Repositories) -> None:
    run = make_run()
    v1 = repos.runs.create(run, [])
    assert [r.record.run_id for r in repos.runs.active()] == [run.run_id]
    v2 = repos.runs.update(v1, replace(run, state=DagRunState.RUNNING, start_date=T0))
    active = repos.runs.active()
    assert active[0].record.state == DagRunState.RUNNING and active[0].index == v2.index
    with pytest.raises(Conflict):
        repos.runs.update(v1, replace(run, state=DagRunState.FAILED))
    v3 = repos.runs.update(v2, replace(v2.record, state=DagRunState.SUCCESS, end_date=T0))
    assert repos.runs.active() == []
    assert repos.runs.require("etl", run.run_id).index == v3.index
    # re-queued after a clear: active again
    repos.runs.update(v3, replace(v3.record, state=DagRunState.QUEUED, end_date=None))
    assert [r.record.state for r in repos.runs.active()] == [DagRunState.QUEUED]


def test_identical_concurrent_updates_do_not_both_win(repos: Repositories) -> None:
    v1 = repos.runs.create(make_run(), [])
    same = replace(v1.record, state=DagRunState.RUNNING)
    repos.runs.update(v1, same)
    with pytest.raises(Conflict):
        repos.runs.update(v1, same)  # identical bytes would keep modify_index without the nonce


def test_delete_removes_tis_tries_and_xcom(repos: Repositories) -> None:
    run = make_run()
    repos.runs.create(run, make_tis(run, 2))
    key = TIKey("etl", run.run_id, "task_000")
    repos.xcom.set(key, "return_value", {"a": 1}, try_number=1, timestamp=T0)
    keep = make_run(n=1)
    repos.runs.create(keep, make_tis(keep, 1))
    assert repos.runs.delete("etl", run.run_id) is True
    assert repos.runs.get("etl", run.run_id) is None
    assert repos.task_instances.list_for_run("etl", run.run_id) == []
    assert repos.xcom.get(key) is None
    assert repos.runs.delete("etl", run.run_id) is False
    assert len(repos.task_instances.list_for_run("etl", keep.run_id)) == 1
    with pytest.raises(NotFound, match="does not exist"):
        repos.runs.require("etl", run.run_id)


def _seed(repos: Repositories) -> None:
    for i in range(5):
        state = DagRunState.SUCCESS if i % 2 == 0 else DagRunState.FAILED
        repos.runs.create(make_run("a", i, state=state), [])
    repos.runs.create(make_run("a", 5, state=DagRunState.RUNNING), [])
    repos.runs.create(make_run("b", 2, state=DagRunState.QUEUED, run_type=DagRunType.MANUAL), [])
    repos.runs.create(make_run("b", 0, state=DagRunState.SUCCESS), [])


def test_list_filters_orders_and_pages(repos: Repositories) -> None:
    _seed(repos)
    page = repos.runs.list(RunQuery(dag_ids=["a"], order_by="-run_after", limit=2, offset=1))
    assert page.total_entries == 6
    assert [r.record.run_after for r in page.items] == [T0 + timedelta(days=4), T0 + timedelta(days=3)]
    failed = repos.runs.list(RunQuery(states=["failed"]))
    assert {r.record.run_after.day for r in failed.items} == {2, 4} and failed.total_entries == 2
    manual = repos.runs.list(RunQuery(run_types=[DagRunType.MANUAL]))
    assert [r.record.dag_id for r in manual.items] == ["b"]
    ranged = repos.runs.list(RunQuery(logical_date_gte=T0 + timedelta(days=1), logical_date_lt=T0 + timedelta(days=3),
                                      order_by="logical_date"))
    assert [(r.record.dag_id, r.record.logical_date.day) for r in ranged.items] == [("a", 2), ("a", 3), ("b", 3)]
    # order_by=id is creation order; nulls (end_date of active runs) first when descending
    by_id = repos.runs.list(RunQuery(order_by="id"))
    assert [r.record.run_after.day for r in by_id.items][:2] == [1, 2]
    by_end = repos.runs.list(RunQuery(order_by="-end_date"))
    assert [r.record.end_date for r in by_end.items][:2] == [None, None]
    assert repos.runs.list(RunQuery(where=lambda r: r.conf.get("n") == 3)).total_entries == 1
    with pytest.raises(ValueError, match="order_by: cannot order dag runs by 'nope'"):
        repos.runs.list(RunQuery(order_by="-nope"))
    with pytest.raises(ValueError, match="offset"):
        repos.runs.list(RunQuery(offset=-1))


def test_latest_counts_and_calendar(repos: Repositories) -> None:
    _seed(repos)
    latest = repos.runs.latest(["a", "b", "none"])
    assert set(latest) == {"a", "b"}
    assert latest["a"][0].record.state == DagRunState.RUNNING
    assert latest["b"][0].record.run_type == DagRunType.MANUAL
    assert len(repos.runs.latest(["a"], n=3)["a"]) == 3
    counts = repos.runs.counts_by_state()
    assert counts == {"a": {"success": 3, "failed": 2, "running": 1}, "b": {"queued": 1, "success": 1}}
    cal = repos.runs.calendar("a", start=T0 + timedelta(days=1), end=T0 + timedelta(days=2))
    assert [(c.date.day, c.state, c.count) for c in cal] == [(2, "failed", 1), (3, "success", 1)]
    hourly = repos.runs.calendar("b", granularity="hourly")
    assert len(hourly) == 2
    assert [r.record.run_after.day for r in repos.runs.for_dag("a")] == [1, 2, 3, 4, 5, 6]


def test_stored_value_is_compact_json(repos: Repositories) -> None:
    run = make_run()
    repos.runs.create(run, [])
    entry = repos.store.get(repos.keyspace.run("etl", run.run_id))
    assert entry is not None and b"clear_number" not in entry.value and b'"state":"queued"' in entry.value
    assert len(entry.value) < 400


def test_corrupt_value_names_the_key(repos: Repositories) -> None:
    key = repos.keyspace.run("etl", "broken")
    repos.store.txn([Set(key, b"{not json")])
    with pytest.raises(Exception, match="broken"):
        repos.runs.get("etl", "broken")
