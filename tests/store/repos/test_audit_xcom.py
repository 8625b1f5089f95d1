"""The audit log (newest first, paged, day buckets) and XCom (256 KiB cap, fenced by try)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leoflow.domain.records import AuditEvent
from leoflow.store.repos import Repositories, StaleTry, TIKey, XComTooLarge
from leoflow.store.repos.xcom import MAX_XCOM_BYTES
from tests.store.repos.conftest import T0, make_run, make_tis


def _event(minutes: float, event: str = "trigger_dag_run", dag_id: str = "etl") -> AuditEvent:
    return AuditEvent(0, T0 + timedelta(minutes=minutes), event, owner="alice", dag_id=dag_id, extra='{"a":1}')


def test_audit_newest_first_across_days(repos: Repositories) -> None:
    stored = [repos.audit.append(_event(m)) for m in (0, 60 * 30, 60 * 30 + 1, 60 * 50, 60 * 50 + 5)]
    assert all(e.event_log_id > 0 for e in stored)
    assert sorted(e.event_log_id for e in stored) == [e.event_log_id for e in stored]  # time-ordered ids
    assert max(e.event_log_id for e in stored) < 2**53
    page = repos.audit.list(limit=2, offset=1)
    assert page.total_entries == 5
    assert [e.when for e in page.items] == [stored[3].when, stored[2].when]
    assert repos.audit.get(stored[2].event_log_id) == stored[2]
    assert repos.audit.get(12345) is None
    assert repos.audit.list(limit=10, offset=10).items == []
    oldest = repos.audit.list(order_by="when", limit=1)
    assert oldest.items == [stored[0]]
    by_dag = repos.audit.list(where=lambda e: e.dag_id == "etl" and e.when > T0, limit=None)
    assert by_dag.total_entries == 4
    with pytest.raises(ValueError, match="cannot order event logs by 'bad'"):
        repos.audit.list(order_by="bad")


def test_audit_expiry_drops_whole_days(repos: Repositories) -> None:
    for m in (0, 60 * 24 * 2, 60 * 24 * 5):
        repos.audit.append(_event(m))
    assert repos.audit.expire(T0 + timedelta(days=3), dry_run=True)[0] == 2
    assert repos.audit.list().total_entries == 3
    events, size = repos.audit.expire(T0 + timedelta(days=3))
    assert events == 2 and size > 0
    assert [e.when for e in repos.audit.list().items] == [T0 + timedelta(days=5)]


def test_xcom_set_get_list_and_limits(repos: Repositories) -> None:
    run = make_run()
    repos.runs.create(run, make_tis(run, 2))
    t0 = TIKey("etl", run.run_id, "task_000")
    t1 = TIKey("etl", run.run_id, "task_001")
    repos.xcom.set(t0, "return_value", {"rows": 3}, try_number=1, timestamp=T0)
    repos.xcom.set(t1, "return_value", "x", try_number=1, timestamp=T0)
    repos.xcom.set(t1, "other key/ü", [1], try_number=1, timestamp=T0)
    assert repos.xcom.get(t0).value == {"rows": 3}  # type: ignore[union-attr]
    assert repos.xcom.get(t1, "other key/ü").value == [1]  # type: ignore[union-attr]
    assert repos.xcom.list(dag_id="etl", run_id=run.run_id).total_entries == 3
    assert [x.key for x in repos.xcom.list(dag_id="etl", run_id=run.run_id, task_id="task_001").items] == [
        "other key/ü", "return_value"]
    assert repos.xcom.list(key="return_value", limit=1).total_entries == 2
    assert repos.xcom.get(t1).value == "x" and repos.xcom.get(TIKey("etl", run.run_id, "nope")) is None  # type: ignore[union-attr]
    # exactly at the cap is fine, one byte over is refused and stores nothing
    at_cap = "a" * (MAX_XCOM_BYTES - 2)
    repos.xcom.set(t0, "big", at_cap, try_number=1, timestamp=T0)
    with pytest.raises(XComTooLarge, match="over the 262144 byte"):
        repos.xcom.set(t0, "huge", at_cap + "b", try_number=1, timestamp=T0)
    assert repos.xcom.get(t0, "huge") is None
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        repos.xcom.set(t0, "bad", {1, 2}, try_number=1, timestamp=T0)
    assert repos.xcom.delete(t1) == 2 and repos.xcom.get(t1) is None
    assert repos.xcom.delete(t0, "big") == 1 and repos.xcom.delete(t0, "big") == 0


def test_xcom_of_an_older_try_never_replaces_a_newer_one(repos: Repositories) -> None:
    t = TIKey("etl", "r", "t")
    repos.xcom.set(t, "return_value", "try2", try_number=2, timestamp=T0)
    with pytest.raises(StaleTry, match="written by try 2"):
        repos.xcom.set(t, "return_value", "try1", try_number=1, timestamp=T0)
    repos.xcom.set(t, "return_value", "try3", try_number=3, timestamp=T0)
    assert repos.xcom.get(t).value == "try3"  # type: ignore[union-attr]
    with pytest.raises(StaleTry, match="written by try 3"):  # the entry records the try that wrote it
        repos.xcom.set(t, "return_value", "try2 again", try_number=2, timestamp=T0)


def test_audit_pages_stay_right_with_cached_day_counts(repos: Repositories) -> None:
    from datetime import UTC, datetime

    old = [repos.audit.append(_event(m)) for m in range(0, 60 * 24 * 4, 60 * 7)]  # 4 settled days
    first = repos.audit.list(limit=5, offset=3)
    now = repos.audit.append(AuditEvent(0, datetime.now(UTC), "today"))
    again = repos.audit.list(limit=5, offset=4)  # settled days' counts now come from the cache
    assert again.total_entries == first.total_entries + 1 == len(old) + 1
    assert again.items == first.items
    everything = repos.audit.list(limit=None)
    assert everything.items[0] == now and everything.items[1:] == sorted(old, key=lambda e: e.when, reverse=True)
    assert repos.audit.list(limit=3, offset=len(old)).items == [old[0]]
