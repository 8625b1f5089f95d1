"""The in-process run projection: same answers as a scan, read-your-writes, other writers via watch."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from leoflow.domain.states import DagRunState
from leoflow.store.port import Store
from leoflow.store.repos import Repositories, RunQuery
from leoflow.store.sqlite import SqliteStore
from tests.store.repos.conftest import make_run


def test_projection_answers_like_a_scan_and_follows_other_writers(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    for i in range(6):
        writer.runs.create(make_run("a" if i % 2 else "b", i, state=DagRunState.SUCCESS), [])
    reader = Repositories.open(store, root="lf", projection=True)
    try:
        q = RunQuery(order_by="-run_after", limit=3, offset=1)
        scan, proj = writer.runs.list(q), reader.runs.list(q)
        assert [r.record for r in proj.items] == [r.record for r in scan.items]
        assert proj.total_entries == scan.total_entries == 6
        assert reader.runs.counts_by_state() == writer.runs.counts_by_state()
        # another process-like writer (its own aggregate) creates, updates and deletes
        new = writer.runs.create(make_run("c", 9), [])
        writer.runs.update(new, replace(new.record, state=DagRunState.RUNNING))
        writer.runs.delete("b", make_run("b", 0).run_id)
        assert reader.projection is not None
        final = writer.runs.get("c", new.record.run_id)
        assert final is not None
        assert reader.projection.wait_for(final.index, timeout=10)
        caught_up = False
        for _ in range(200):  # the delete came after `final`: poll (bounded) until it shows too
            latest = reader.runs.latest(["c"])
            if latest.get("c") and latest["c"][0].record.state == DagRunState.RUNNING and \
                    reader.runs.list(RunQuery()).total_entries == 6:
                caught_up = True
                break
            reader.projection.wait_for(reader.projection.index + 1, timeout=0.05)
        assert caught_up
        assert make_run("b", 0).run_id not in {r.record.run_id for r in reader.runs.for_dag("b")}
        assert reader.projection.refreshes >= 2
    finally:
        reader.close()


def test_read_your_writes_without_waiting(store: Store) -> None:
    repos = Repositories.open(store, root="lf", projection=True)
    try:
        v = repos.runs.create(make_run("d", 1), [])
        assert [r.record.run_id for r in repos.runs.list(RunQuery(dag_ids=["d"])).items] == [v.record.run_id]
        assert repos.projection is not None
        repos.projection.stop()  # from here on only local writes and the listings we feed it
        v2 = repos.runs.update(v, replace(v.record, state=DagRunState.FAILED))
        assert repos.runs.counts_by_state(["d"]) == {"d": {"failed": 1}}
        # a listing taken before the write, arriving after it, does not revert it
        repos.projection._apply(v.index, [])
        assert repos.runs.list(RunQuery(dag_ids=["d"])).items[0].index == v2.index
        repos.runs.delete("d", v.record.run_id)
        assert repos.runs.list(RunQuery(dag_ids=["d"])).total_entries == 0
        assert len(repos.projection) == 0
    finally:
        repos.close()


def test_sorted_cache_follows_changes_and_filters(store: Store) -> None:
    repos = Repositories.open(store, root="lf", projection=True)
    try:
        v = [repos.runs.create(make_run("e", i, state=DagRunState.SUCCESS), []) for i in range(4)]
        newest = RunQuery(order_by="-run_after", limit=2)
        assert [r.record.run_after.day for r in repos.runs.list(newest).items] == [4, 3]
        repos.runs.update(v[3], replace(v[3].record, state=DagRunState.FAILED))
        repos.runs.create(make_run("e", 9, state=DagRunState.RUNNING), [])
        assert [r.record.run_after.day for r in repos.runs.list(newest).items] == [10, 4]
        failed = repos.runs.list(RunQuery(states=["failed"], order_by="-run_after"))
        assert [r.record.run_after.day for r in failed.items] == [4] and failed.total_entries == 1
        assert repos.runs.list(RunQuery(order_by="-run_after", offset=4)).total_entries == 5
    finally:
        repos.close()


def test_close_leaves_the_store_safe_to_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    repos = Repositories.open(store, root="lf", projection=True)
    time.sleep(0.1)  # the watch thread is now inside a blocking query
    repos.close()
    assert repos.projection is not None and repos.projection._thread is None  # it has left the store
    store.close()


def test_latest_from_the_projection_matches_the_scan_including_ties(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    for i in range(5):
        writer.runs.create(make_run("a", i, state=DagRunState.SUCCESS), [])
    tie = make_run("a", 4, state=DagRunState.FAILED)  # same run_after as run 4: the newer creation wins
    writer.runs.create(replace(tie, run_id="manual__tie", run_type=tie.run_type), [])
    writer.runs.create(make_run("b", 0), [])
    reader = Repositories.open(store, root="lf", projection=True)
    try:
        for dags, n in ((None, 1), (["a", "b", "none"], 3), (["a"], 10)):
            scan, proj = writer.runs.latest(dags, n), reader.runs.latest(dags, n)
            assert {d: [v.record.run_id for v in runs] for d, runs in proj.items()} == \
                   {d: [v.record.run_id for v in runs] for d, runs in scan.items()}
        assert reader.runs.latest(["a"])["a"][0].record.run_id == "manual__tie"
    finally:
        reader.close()


def test_a_state_filter_over_few_runs_answers_like_the_scan(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    for i in range(12):
        writer.runs.create(make_run("a" if i % 3 else "b", i, state=DagRunState.SUCCESS), [])
    running = writer.runs.create(make_run("a", 20, state=DagRunState.RUNNING), [])
    writer.runs.create(make_run("b", 21, state=DagRunState.QUEUED), [])
    reader = Repositories.open(store, root="lf", projection=True)
    try:
        for q in (RunQuery(states=["running", "queued"], limit=1),
                  RunQuery(states=[DagRunState.QUEUED, DagRunState.RUNNING], order_by="-run_after"),
                  RunQuery(states=["running"], order_by="start_date", offset=0),
                  RunQuery(states=["success"], order_by="-id", limit=5),  # many runs: the sorted path
                  RunQuery(states=[])):
            scan, proj = writer.runs.list(q), reader.runs.list(q)
            assert [r.record.run_id for r in proj.items] == [r.record.run_id for r in scan.items]
            assert proj.total_entries == scan.total_entries
        # this process's own write shows in the probe at once
        reader.runs.update(reader.runs.require("a", running.record.run_id),
                           replace(running.record, state=DagRunState.SUCCESS))
        assert [r.record.state for r in reader.runs.list(RunQuery(states=["running", "queued"])).items] == \
               [DagRunState.QUEUED]
    finally:
        reader.close()
