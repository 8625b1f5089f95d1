"""The run_after window of the run projection and the decoded-snapshot cache of task instances.

The DAG page polls "every TI of every run whose run_after lies in the last day": the runs come from
a bisect of the projection's per-DAG list, the TIs from snapshots whose unchanged entries are not
decoded again. Both must answer exactly what a scan of the store answers, whoever wrote last.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from leoflow.domain.records import TaskInstance
from leoflow.domain.states import DagRunState, TaskInstanceState
from leoflow.store.port import Store
from leoflow.store.repos import Repositories, RunQuery
from leoflow.store.repos.base import TIKey
from leoflow.store.sqlite import SqliteStore
from tests.processes import CountingStore
from tests.store.repos.conftest import T0, make_run


def _days(runs: list) -> list[int]:
    return [(v.record.run_after - T0).days for v in runs]


def _tis(dag_id: str, run_id: str, state: TaskInstanceState | None = TaskInstanceState.SUCCESS) -> list[TaskInstance]:
    return [TaskInstance(dag_id=dag_id, run_id=run_id, task_id=t, state=state, try_number=1 if state else 0,
                         dag_version_number=1) for t in ("a", "b", "c")]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"run_after_gte": 2, "run_after_lte": 4}, [2, 3, 4]),  # both ends inclusive
        ({"run_after_gt": 2, "run_after_lt": 4}, [3]),  # both ends exclusive
        ({"run_after_gte": 2, "run_after_lt": 2}, []),
        ({"run_after_gte": 5}, [5, 6]),
        ({"run_after_lte": 0}, [0]),
        ({"run_after_gte": 9}, []),
        ({"run_after_gte": 2, "run_after_gt": 3, "run_after_lte": 5, "run_after_lt": 6}, [4, 5]),
    ],
)
def test_window_bounds_match_a_scan(store: Store, bounds: dict[str, int], expected: list[int]) -> None:
    writer = Repositories.open(store, root="lf")
    for i in range(7):
        writer.runs.create(make_run("w", i, state=DagRunState.SUCCESS), [])
        writer.runs.create(make_run("other", i, state=DagRunState.SUCCESS), [])
    reader = Repositories.open(store, root="lf", projection=True)
    try:
        q = RunQuery(dag_ids=["w"], limit=None, **{k: T0 + timedelta(days=d) for k, d in bounds.items()})
        scan, windowed = writer.runs.list(q), reader.runs.list(q)
        assert _days(windowed.items) == _days(scan.items) == expected
        assert windowed.total_entries == scan.total_entries == len(expected)
        assert {v.record.dag_id for v in windowed.items} <= {"w"}
        # ordered and paged as any listing
        newest = dataclasses.replace(q, order_by="-run_after", limit=1)
        assert _days(reader.runs.list(newest).items) == _days(writer.runs.list(newest).items) == expected[-1:]
    finally:
        reader.close()
        writer.close()


def test_window_ties_and_several_dags(srepos: Repositories, sqlite_store: Store) -> None:
    reader = Repositories.open(sqlite_store, root="lf", projection=True)
    try:
        base = make_run("t", 3, state=DagRunState.SUCCESS)
        for suffix in ("x", "y", "z"):  # three runs with the same run_after
            srepos.runs.create(dataclasses.replace(base, run_id=f"{base.run_id}{suffix}"), [])
        srepos.runs.create(make_run("u", 3, state=DagRunState.SUCCESS), [])
        assert reader.projection is not None
        reader.projection.refresh()
        at = T0 + timedelta(days=3)
        q = RunQuery(dag_ids=["t", "u"], run_after_gte=at, run_after_lte=at, limit=None)
        scanned = [v.record.run_id for v in srepos.runs.list(q).items]
        assert [v.record.run_id for v in reader.runs.list(q).items] == scanned
        assert reader.runs.list(q).total_entries == 4
        assert reader.runs.list(dataclasses.replace(q, dag_ids=["nope"])).total_entries == 0
    finally:
        reader.close()


def test_runs_enter_and_leave_the_window_as_another_writer_changes_the_store(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    runs = [writer.runs.create(make_run("w", i, state=DagRunState.SUCCESS), []) for i in range(5)]
    reader = Repositories.open(store, root="lf", projection=True)
    assert reader.projection is not None
    q = RunQuery(dag_ids=["w"], run_after_gte=T0 + timedelta(days=2), run_after_lte=T0 + timedelta(days=6),
                 limit=None, order_by="run_after")
    try:
        assert _days(reader.runs.list(q).items) == [2, 3, 4]
        entered = writer.runs.create(make_run("w", 6), [])  # on the upper boundary
        assert reader.projection.wait_for(entered.index, timeout=10)
        assert _days(reader.runs.list(q).items) == [2, 3, 4, 6]
        # a run moved out of the window by another writer's update leaves it
        moved = writer.runs.update(runs[3], dataclasses.replace(runs[3].record, run_after=T0 + timedelta(days=20)))
        assert reader.projection.wait_for(moved.index, timeout=10)
        assert _days(reader.runs.list(q).items) == [2, 4, 6]
        # ... and one moved into it enters it
        back = writer.runs.update(runs[0], dataclasses.replace(runs[0].record, run_after=T0 + timedelta(days=5)))
        assert reader.projection.wait_for(back.index, timeout=10)
        assert _days(reader.runs.list(q).items) == [2, 4, 5, 6]
        # deleted elsewhere: gone once the watch has seen it (bounded poll; deletes carry no index here)
        writer.runs.delete("w", runs[2].record.run_id)
        for _ in range(200):
            if _days(reader.runs.list(q).items) == [4, 5, 6]:
                break
            reader.projection.wait_for(reader.projection.index + 1, timeout=0.05)
        assert _days(reader.runs.list(q).items) == [4, 5, 6]
    finally:
        reader.close()
        writer.close()


def test_local_writes_and_deletes_show_in_the_window_at_once(srepos: Repositories, sqlite_store: Store) -> None:
    repos = Repositories.open(sqlite_store, root="lf", projection=True)
    assert repos.projection is not None
    repos.projection.stop()  # only this process's writes reach it from here on
    q = RunQuery(dag_ids=["w"], run_after_gte=T0, run_after_lte=T0 + timedelta(days=1), limit=None)
    try:
        a = repos.runs.create(make_run("w", 0), [])
        repos.runs.create(make_run("w", 1), [])
        assert _days(repos.runs.list(q).items) == [0, 1]
        repos.runs.delete("w", a.record.run_id)
        assert _days(repos.runs.list(q).items) == [1]
        repos.runs.create(make_run("w", 2), [])
        assert _days(repos.runs.list(q).items) == [1]
    finally:
        repos.close()


def test_snapshots_of_unchanged_runs_are_not_decoded_again(srepos: Repositories) -> None:
    run = make_run("p", 1, state=DagRunState.SUCCESS)
    srepos.runs.create(run, _tis("p", run.run_id))
    cache = srepos.task_instances.cache
    first = srepos.task_instances.snapshot("p", run.run_id)
    assert srepos.task_instances.snapshot("p", run.run_id) is first and cache.hits >= 1
    assert srepos.runs.compact("p", run.run_id)
    packed = srepos.task_instances.snapshot("p", run.run_id)
    assert packed.packed_index > 0 and packed.live_keys == 0
    assert [v.record for v in packed.current] == [v.record for v in first.current]
    misses = cache.misses
    assert srepos.task_instances.snapshot("p", run.run_id) is packed and cache.misses == misses


def test_a_packed_run_changed_by_another_writer_is_read_fresh(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    reader = Repositories.open(store, root="lf", projection=True)
    try:
        run = writer.runs.create(make_run("p", 1, state=DagRunState.SUCCESS), _tis("p", make_run("p", 1).run_id))
        rid = run.record.run_id
        assert writer.runs.compact("p", rid)
        before = reader.task_instances.snapshot("p", rid)
        assert before.packed_index and {v.record.state for v in before.current} == {TaskInstanceState.SUCCESS}
        # a note on a packed TI (unpacks, which rewrites the run record unchanged), then compacted again
        ti = writer.task_instances.require(TIKey("p", rid, "b"))
        writer.task_instances.transition(ti, dataclasses.replace(ti.record, note="checked"))
        noted = reader.task_instances.snapshot("p", rid)
        assert noted.packed_index == 0 and noted.get("b") is not None and noted.get("b").record.note == "checked"
        assert writer.runs.compact("p", rid)
        repacked = reader.task_instances.snapshot("p", rid)
        assert repacked.packed_index not in (0, before.packed_index) and repacked.get("b").record.note == "checked"
        # a clear: the run becomes active, its TIs are unpacked and reset
        cur = writer.runs.require("p", rid)
        writer.runs.update(cur, dataclasses.replace(cur.record, state=DagRunState.QUEUED, clear_number=1))
        ti = writer.task_instances.require(TIKey("p", rid, "a"))
        writer.task_instances.transition(ti, dataclasses.replace(ti.record, state=None))
        cleared = reader.task_instances.snapshot("p", rid)
        assert cleared.packed_index == 0 and cleared.get("a").record.state is None
        assert cleared.get("c").record.state == TaskInstanceState.SUCCESS
        # a run deleted elsewhere has no TIs any more, whatever was cached
        writer.runs.delete("p", rid)
        assert reader.task_instances.list_for_run("p", rid) == []
    finally:
        reader.close()
        writer.close()


def test_a_live_run_re_decodes_only_changed_keys(srepos: Repositories) -> None:
    run = make_run("l", 1, state=DagRunState.RUNNING)
    srepos.runs.create(run, _tis("l", run.run_id, None))
    first = srepos.task_instances.snapshot("l", run.run_id)
    ti = srepos.task_instances.require(TIKey("l", run.run_id, "a"))
    srepos.task_instances.transition(ti, dataclasses.replace(ti.record, state=TaskInstanceState.RUNNING,
                                                                try_number=1))
    second = srepos.task_instances.snapshot("l", run.run_id)
    assert second is not first
    assert second.get("a").record.state == TaskInstanceState.RUNNING
    assert second.get("b") is first.get("b") and second.get("c") is first.get("c")  # reused, not decoded


def test_the_cache_is_bounded(srepos: Repositories) -> None:
    srepos.task_instances.cache.max_runs = 2
    ids = []
    for i in range(4):
        run = make_run("b", i, state=DagRunState.SUCCESS)
        srepos.runs.create(run, _tis("b", run.run_id))
        ids.append(run.run_id)
        srepos.task_instances.snapshot("b", run.run_id)
    assert len(srepos.task_instances.cache) == 2
    assert [v.record.task_id for v in srepos.task_instances.list_for_run("b", ids[0])] == ["a", "b", "c"]


def test_a_settled_compacted_run_is_answered_without_a_store_request(sqlite_store: SqliteStore) -> None:
    counting = CountingStore(sqlite_store)
    repos = Repositories.open(counting, root="lf")  # type: ignore[arg-type]
    run = repos.runs.create(make_run("p", 1, state=DagRunState.SUCCESS), _tis("p", make_run("p", 1).run_id))
    rid = run.record.run_id
    assert repos.runs.compact("p", rid)
    settled = repos.runs.require("p", rid)
    first = repos.task_instances.snapshot("p", rid, settled_at=settled.index)
    counting.calls.clear()
    assert repos.task_instances.snapshot("p", rid, settled_at=settled.index) is first
    assert sum(counting.calls.values()) == 0
    # a live (not compacted) run is never kept this way: its TIs change without the run record
    live = repos.runs.create(make_run("q", 1, state=DagRunState.SUCCESS), _tis("q", make_run("q", 1).run_id))
    repos.task_instances.snapshot("q", live.record.run_id, settled_at=live.index)
    counting.calls.clear()
    repos.task_instances.snapshot("q", live.record.run_id, settled_at=live.index)
    assert counting.calls["list"] == 1


def test_unpacking_rewrites_the_run_record_so_settled_readers_see_later_changes(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    reader = Repositories.open(store, root="lf")
    run = writer.runs.create(make_run("p", 1, state=DagRunState.SUCCESS), _tis("p", make_run("p", 1).run_id))
    rid = run.record.run_id
    assert writer.runs.compact("p", rid)
    at = writer.runs.require("p", rid)
    reader.task_instances.snapshot("p", rid, settled_at=at.index)
    # another process notes a TI: unpack rewrites the run record (same content, new index) first
    ti = writer.task_instances.require(TIKey("p", rid, "b"))
    writer.task_instances.transition(ti, dataclasses.replace(ti.record, note="checked"))
    after = writer.runs.require("p", rid)
    assert after.index > at.index and after.record == at.record
    fresh = reader.task_instances.snapshot("p", rid, settled_at=after.index)
    assert fresh.get("b") is not None and fresh.get("b").record.note == "checked"
    # this process's own change: its settled copy is dropped at once (read your writes)
    assert writer.runs.compact("p", rid)
    again = writer.runs.require("p", rid)
    writer.task_instances.snapshot("p", rid, settled_at=again.index)
    ti = writer.task_instances.require(TIKey("p", rid, "c"))
    writer.task_instances.transition(ti, dataclasses.replace(ti.record, note="mine"))
    mine = writer.task_instances.snapshot("p", rid, settled_at=again.index)  # even with the old index
    assert mine.get("c") is not None and mine.get("c").record.note == "mine"


def test_a_cleared_run_keeps_the_index_its_update_returned(srepos: Repositories) -> None:
    """Making a finished run active unpacks without a second rewrite of the run record: the
    version ``update`` returned stays the one a compare-and-set must quote."""
    run = srepos.runs.create(make_run("p", 1, state=DagRunState.SUCCESS), _tis("p", make_run("p", 1).run_id))
    rid = run.record.run_id
    assert srepos.runs.compact("p", rid)
    cur = srepos.runs.require("p", rid)
    queued = srepos.runs.update(cur, dataclasses.replace(cur.record, state=DagRunState.QUEUED, clear_number=1))
    assert srepos.task_instances.snapshot("p", rid).packed_index == 0  # unpacked
    running = srepos.runs.update(queued, dataclasses.replace(queued.record, state=DagRunState.RUNNING))
    assert running.record.state == DagRunState.RUNNING
