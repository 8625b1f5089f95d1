"""The scheduler's WriteBatch: packing into <= 64-op fenced txns, per-decision conflicts, deposed leaders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from leoflow.domain.states import DagRunState
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.fence import Fence, NotLeader
from leoflow.store.port import Set, Store
from leoflow.store.repos import Fenced, RepoError, Repositories, TIKey
from tests.store.repos.conftest import make_run, make_tis


def _leader(store: Store, key: str = "lf/leader") -> Fence:
    session = store.session_create(name="test-leader", ttl=10.0, lock_delay=0.0)
    assert store.put(key, b"me", acquire=session)
    return Fence(key, session)


def test_batch_packs_decisions_into_few_fenced_txns(repos: Repositories) -> None:
    fence = _leader(repos.store)
    run = make_run()
    repos.runs.create(run, make_tis(run, 100))
    tis = repos.task_instances.list_for_run("etl", run.run_id)
    batch = repos.batch(fence)
    handles = [batch.transition(v, replace(v.record, state=S.QUEUED, try_number=1)) for v in tis]
    result = batch.commit()
    assert result.ok and result.txns == 2 and result.ops == 100 + 2  # 63 + 37 decisions, one fence each
    assert all(h.ok and h.result.index > 0 for h in handles)
    assert {v.record.state for v in repos.task_instances.list_for_run("etl", run.run_id)} == {S.QUEUED}
    # the handles carry indexes usable for the next CAS
    again = repos.batch(fence)
    again.transition(handles[0].result, replace(handles[0].result.record, state=S.RUNNING))
    assert again.commit().ok


def test_a_lost_cas_drops_only_its_decision(repos: Repositories) -> None:
    run = make_run()
    v_run = repos.runs.create(run, make_tis(run, 3))
    tis = repos.task_instances.list_for_run("etl", run.run_id)
    # someone else moves task_001 first
    repos.task_instances.transition(tis[1], replace(tis[1].record, state=S.SKIPPED))
    batch = repos.batch()
    handles = [batch.transition(v, replace(v.record, state=S.QUEUED, try_number=1)) for v in tis]
    run_handle = batch.update_run(v_run, replace(run, state=DagRunState.RUNNING))
    result = batch.commit()
    assert [h.ok for h in handles] == [True, False, True] and run_handle.ok
    assert result.conflicts == [handles[1]] and "compare-and-set lost" in str(handles[1].error)
    states = [v.record.state for v in repos.task_instances.list_for_run("etl", run.run_id)]
    assert states == [S.QUEUED, S.SKIPPED, S.QUEUED]
    assert repos.runs.require("etl", run.run_id).record.state == DagRunState.RUNNING


def test_a_deposed_leader_writes_nothing(repos: Repositories) -> None:
    fence = _leader(repos.store)
    run = make_run()
    repos.runs.create(run, make_tis(run, 2))
    tis = repos.task_instances.list_for_run("etl", run.run_id)
    repos.store.session_destroy(fence.session)
    batch = repos.batch(fence)
    for v in tis:
        batch.transition(v, replace(v.record, state=S.QUEUED, try_number=1))
    with pytest.raises(Fenced) as info:
        batch.commit()
    assert isinstance(info.value, NotLeader)
    assert {v.record.state for v in repos.task_instances.list_for_run("etl", run.run_id)} == {None}
    with pytest.raises(NotLeader):
        repos.runs.create(make_run(n=1), [], fence=fence)
    assert repos.runs.get("etl", make_run(n=1).run_id) is None
    with pytest.raises(NotLeader):
        repos.task_instances.transition(tis[0], replace(tis[0].record, state=S.QUEUED, try_number=1), fence=fence)


def test_batch_creates_runs_and_extra_groups(repos: Repositories) -> None:
    fence = _leader(repos.store)
    batch = repos.batch(fence)
    runs = [make_run(n=i) for i in range(20)]
    handles = [batch.create_run(r, make_tis(r, 2)) for r in runs]
    extra = batch.add_ops("queue entry", [Set("lf/agents/queue/x", b"1")])
    dup = batch.create_run(runs[0], [])
    result = batch.commit()
    assert all(h.ok for h in handles) and extra.ok and not dup.ok
    assert result.txns >= 2  # 20 x 4 ops do not fit one txn
    assert len(repos.runs.active()) == 20 and repos.store.get("lf/agents/queue/x") is not None
    with pytest.raises(RepoError, match="do not fit one transaction"):
        repos.batch(fence).create_run(make_run(n=99), make_tis(make_run(n=99), 70))


def test_batch_xcom_in_the_same_group_as_the_terminal_transition(repos: Repositories) -> None:
    run = make_run()
    repos.runs.create(run, make_tis(run, 1))
    v = repos.task_instances.list_for_run("etl", run.run_id)[0]
    v = repos.task_instances.transition(v, replace(v.record, state=S.RUNNING, try_number=1))
    key = TIKey("etl", run.run_id, "task_000")
    batch = repos.batch()
    ops = [*repos.task_instances.transition_ops(v, replace(v.record, state=S.SUCCESS)),
           *repos.xcom.set_ops(key, "return_value", [1, 2], try_number=1, timestamp=run.run_after)]
    h = batch.add_ops("finish", ops)
    assert batch.commit().ok and h.ok
    assert repos.xcom.get(key).value == [1, 2]  # type: ignore[union-attr]
