"""Task instances: CAS transitions fenced by try_number, history, reports, races between writers."""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from leoflow.domain.records import TaskInstance
from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.repos import Conflict, Repositories, StaleTry, TIKey, Versioned
from leoflow.store.sqlite import SqliteStore
from tests.store.repos.conftest import T0, make_run, make_tis


def _one(repos: Repositories) -> tuple[TIKey, Versioned[TaskInstance]]:
    run = make_run()
    repos.runs.create(run, make_tis(run, 2))
    key = TIKey("etl", run.run_id, "task_000")
    return key, repos.task_instances.require(key)


def _queue(repos: Repositories, v: Versioned[TaskInstance]) -> Versioned[TaskInstance]:
    fresh = replace(v.record, state=S.QUEUED, try_number=v.record.try_number + 1, exit_code=None, start_date=None,
                    end_date=None)
    return repos.task_instances.transition(v, fresh)


def test_transition_is_cas(repos: Repositories) -> None:
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    assert repos.task_instances.require(key).record.state == S.QUEUED
    with pytest.raises(Conflict):
        repos.task_instances.transition(v0, replace(v0.record, state=S.SCHEDULED))
    assert repos.task_instances.require(key).index == v1.index


def test_try_number_never_goes_back(repos: Repositories) -> None:
    _, v0 = _one(repos)
    v1 = _queue(repos, v0)
    v2 = repos.task_instances.transition(v1, replace(v1.record, state=S.UP_FOR_RETRY))
    v3 = _queue(repos, v2)
    with pytest.raises(StaleTry, match="try 2"):
        repos.task_instances.transition(v3, replace(v3.record, try_number=1, state=S.SUCCESS))


def test_retry_keeps_the_previous_try_in_history(repos: Repositories) -> None:
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    v1 = repos.task_instances.transition(v1, replace(v1.record, state=S.RUNNING, start_date=T0))
    v1 = repos.task_instances.transition(v1, replace(v1.record, state=S.UP_FOR_RETRY, end_date=T0, exit_code=1))
    v2 = _queue(repos, v1)
    repos.task_instances.transition(v2, replace(v2.record, state=S.SUCCESS))
    tries = repos.task_instances.tries(key)
    # Airflow records a superseded unfinished try (up_for_retry) as failed in the history.
    assert [(t.try_number, t.state, t.exit_code) for t in tries] == [(1, S.FAILED, 1), (2, S.SUCCESS, None)]
    snap = repos.task_instances.snapshot("etl", key.run_id)
    assert sorted(str(v.record.state) for v in snap.current) == ["None", "success"]


def test_a_cleared_try_archived_by_the_clear_is_not_overwritten(repos: Repositories) -> None:
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    v1 = repos.task_instances.transition(v1, replace(v1.record, state=S.FAILED))
    # a clear: archive try 1 as it was, reset the TI to state None at try 1 (scheduler's actions.clear)
    repos.store.txn(repos.task_instances.archive_ops([v1.record]))
    v1c = repos.task_instances.transition(v1, replace(v1.record, state=None))
    _queue(repos, v1c)
    assert [(t.try_number, t.state) for t in repos.task_instances.tries(key)] == [(1, S.FAILED), (2, S.QUEUED)]


def test_report_is_fenced_by_try_number(repos: Repositories) -> None:
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    v1 = repos.task_instances.transition(v1, replace(v1.record, state=S.UP_FOR_RETRY))
    _queue(repos, v1)  # try 2 now owns the TI
    with pytest.raises(StaleTry, match="current try is 2"):
        repos.task_instances.report(key, 1, lambda ti: replace(ti, state=S.SUCCESS))
    done = repos.task_instances.report(key, 2, lambda ti: replace(ti, state=S.RUNNING))
    assert done.record.state == S.RUNNING
    unchanged = repos.task_instances.report(key, 2, lambda ti: None)
    assert unchanged.index == done.index
    with pytest.raises(ValueError, match="try_number"):
        repos.task_instances.report(key, 2, lambda ti: replace(ti, try_number=3))


def test_report_retries_a_lost_race_on_the_fresh_record(repos: Repositories) -> None:
    key, v0 = _one(repos)
    _queue(repos, v0)
    calls = []

    def change(ti: TaskInstance) -> TaskInstance:
        calls.append(ti.hostname)
        if len(calls) == 1:  # someone else writes between our read and our CAS
            cur = repos.task_instances.require(key)
            repos.task_instances.transition(cur, replace(cur.record, hostname="other"))
        return replace(ti, state=S.RUNNING)

    result = repos.task_instances.report(key, 1, change)
    assert calls == [None, "other"] and result.record.hostname == "other"


def test_two_threads_racing_on_one_ti_never_both_win(repos: Repositories) -> None:
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    barrier = threading.Barrier(8)
    wins: list[int] = []
    losses: list[int] = []

    def worker(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            repos.task_instances.transition(v1, replace(v1.record, state=S.RUNNING, hostname=f"h{i}"))
            wins.append(i)
        except Conflict:
            losses.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1 and len(losses) == 7
    assert repos.task_instances.require(key).record.hostname == f"h{wins[0]}"


def _race_process(path: str, name: str, start: multiprocessing.synchronize.Event,
                  ready: multiprocessing.Queue, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteStore(path)
    repos = Repositories.open(store, root="lf")
    key = TIKey("etl", make_run().run_id, "task_000")
    cur = repos.task_instances.require(key)
    ready.put((name, cur.index))
    start.wait(20)
    try:
        repos.task_instances.transition(cur, replace(cur.record, state=S.RUNNING, hostname=name))
        out.put((name, "won"))
    except Conflict:
        out.put((name, "lost"))
    store.close()


def test_two_processes_racing_on_one_ti_never_both_win(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    store = SqliteStore(path)
    repos = Repositories.open(store, root="lf")
    key, v0 = _one(repos)
    v1 = _queue(repos, v0)
    ctx = multiprocessing.get_context("spawn")
    start, ready, out = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_race_process, args=(path, f"p{i}", start, ready, out)) for i in range(2)]
    for p in procs:
        p.start()
    try:
        seen = [ready.get(timeout=30) for _ in procs]
        assert [index for _, index in seen] == [v1.index, v1.index]  # both read the same version
        start.set()
        results = dict(out.get(timeout=30) for _ in procs)
    finally:
        start.set()
        for p in procs:
            p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(results.values()) == ["lost", "won"]
    winner = next(n for n, r in results.items() if r == "won")
    assert repos.task_instances.require(key).record.hostname == winner
    store.close()


def test_transition_refuses_another_ti(repos: Repositories) -> None:
    _, v0 = _one(repos)
    with pytest.raises(ValueError, match="is not the task instance"):
        repos.task_instances.transition(v0, replace(v0.record, task_id="task_001"))


def test_create_many_is_create_only(repos: Repositories) -> None:
    run = make_run()
    repos.runs.create(run, [])
    mapped = [TaskInstance("etl", run.run_id, "m", map_index=i) for i in range(70)]
    created = repos.task_instances.create_many(mapped)
    assert len(created) == 70 and all(v.index > 0 for v in created)
    with pytest.raises(Exception, match="already exists"):
        repos.task_instances.create_many(mapped[:2])
    assert [v.record.map_index for v in repos.task_instances.list_for_run("etl", run.run_id)] == list(range(70))


def test_compacted_run_reads_the_same_and_unpacks_on_change(repos: Repositories) -> None:
    run = make_run()
    vr = repos.runs.create(run, make_tis(run, 4))
    key = TIKey("etl", run.run_id, "task_001")
    v = _queue(repos, repos.task_instances.require(key))
    v = repos.task_instances.transition(v, replace(v.record, state=S.UP_FOR_RETRY))
    v = _queue(repos, v)
    v = repos.task_instances.transition(v, replace(v.record, state=S.SUCCESS))
    repos.runs.update(vr, replace(run, state=DagRunState.SUCCESS, end_date=T0))
    before = repos.task_instances.snapshot("etl", run.run_id)
    assert repos.runs.compact("etl", run.run_id) is True
    assert repos.runs.compact("etl", run.run_id) is False  # nothing left to fold
    after = repos.task_instances.snapshot("etl", run.run_id)
    assert after.packed_index > 0 and after.live_keys == 0
    assert [x.record for x in after.current] == [x.record for x in before.current]
    assert after.history == before.history
    assert len(repos.store.list(repos.keyspace.ti_run_prefix("etl", run.run_id))) == 1
    packed_ti = repos.task_instances.require(key)
    assert packed_ti.index == 0 and packed_ti.record.state == S.SUCCESS
    # marking a TI of the compacted run unpacks it first
    marked = repos.task_instances.transition(packed_ti, replace(packed_ti.record, state=S.FAILED))
    assert marked.index > 0
    snap = repos.task_instances.snapshot("etl", run.run_id)
    assert snap.packed_index == 0 and snap.get("task_001").record.state == S.FAILED  # type: ignore[union-attr]
    assert [t.try_number for t in snap.tries("task_001", -1)] == [1, 2]


def test_compaction_loses_to_a_concurrent_transition(repos: Repositories) -> None:
    run = make_run(state=DagRunState.FAILED)
    repos.runs.create(run, make_tis(run, 2))
    key = TIKey("etl", run.run_id, "task_000")
    stale = repos.task_instances.require(key)
    entries = repos.store.list(repos.keyspace.ti_run_prefix("etl", run.run_id))
    repos.task_instances.transition(stale, replace(stale.record, state=S.SKIPPED))
    # replay a compaction planned on the old listing: it must fail and change nothing
    from leoflow.store.port import Cas, DeleteCas
    from leoflow.store.repos.task_instances import pack_value
    ops = [Cas(repos.keyspace.packed("etl", run.run_id), pack_value("etl", run.run_id, [], []), 0),
           *(DeleteCas(e.key, e.modify_index) for e in entries)]
    assert repos.store.txn(ops).ok is False
    assert repos.task_instances.require(key).record.state == S.SKIPPED


def test_big_finished_run_compacts_in_several_txns(repos: Repositories) -> None:
    run = make_run(state=DagRunState.SUCCESS)
    repos.runs.create(run, make_tis(run, 100))
    assert repos.runs.compact("etl", run.run_id) is True
    snap = repos.task_instances.snapshot("etl", run.run_id)
    assert len(snap.current) == 100 and snap.live_keys == 0
    assert repos.runs.compact("etl", run.run_id) is False
    assert repos.runs.compact("etl", "missing") is False


def test_reopening_a_compacted_run_unpacks_its_tis(repos: Repositories) -> None:
    run = make_run(state=DagRunState.SUCCESS)
    vr = repos.runs.create(run, make_tis(run, 3))
    assert repos.runs.compact("etl", run.run_id)
    stale = repos.task_instances.require(TIKey("etl", run.run_id, "task_002"))
    assert stale.index == 0
    # a clear through the scheduler's batch: the run goes back to queued, its TIs become live
    batch = repos.batch()
    batch.update_run(vr, replace(run, state=DagRunState.QUEUED, end_date=None))
    assert batch.commit().ok
    snap = repos.task_instances.snapshot("etl", run.run_id)
    assert snap.packed_index == 0 and all(v.index > 0 for v in snap.current)
    # a TI still held as read from the packed value is unpacked-and-compared by the batch
    again = repos.batch()
    h = again.transition(stale, replace(stale.record, state=S.QUEUED, try_number=1))
    assert again.commit().ok and h.ok


def test_batch_transition_on_a_packed_ti_unpacks_first(repos: Repositories) -> None:
    run = make_run(state=DagRunState.FAILED)
    repos.runs.create(run, make_tis(run, 2))
    assert repos.runs.compact("etl", run.run_id)
    packed = repos.task_instances.list_for_run("etl", run.run_id)
    batch = repos.batch()
    ok = batch.transition(packed[0], replace(packed[0].record, state=S.SUCCESS))
    changed = replace(packed[1], record=replace(packed[1].record, note="someone else's view"))
    lost = batch.transition(changed, replace(packed[1].record, state=S.SUCCESS))
    result = batch.commit()
    assert ok.ok and not lost.ok and result.conflicts == [lost]
    assert [v.record.state for v in repos.task_instances.list_for_run("etl", run.run_id)] == [S.SUCCESS, None]
