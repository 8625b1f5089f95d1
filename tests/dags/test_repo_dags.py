"""The DAG repository on the real SQLite adapter: versions, blobs, import errors, state, read costs."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from leoflow.dags.loader import parse_yaml_text
from leoflow.domain.dag import DAG
from leoflow.domain.serialize import dag_hash
from leoflow.store.port import MAX_VALUE_BYTES, ValueTooLarge
from leoflow.store.repos.dags import DagRepository, DagSummary
from leoflow.store.repos.errors import NotFound
from leoflow.store.sqlite import SqliteStore
from tests.processes import CountingStore

from .conftest import dag_yaml

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def parse(text: str, fileloc: str = "d.yaml") -> DAG:
    parsed = parse_yaml_text(fileloc, text)
    assert parsed.ok, parsed.errors
    return parsed.dags[0]


def test_versions_follow_content(repo: DagRepository) -> None:
    v1_dag = parse(dag_yaml("d", command="one"))
    v1 = repo.record_version(v1_dag, "src1", bundle_name="b", bundle_version="c1", now=T0)
    assert v1 is not None and v1.version_number == 1 and v1.bundle_version == "c1"
    assert v1.content_hash == dag_hash(v1_dag) and v1.fileloc == "d.yaml" and v1.created_at == T0
    # same serialized form (a comment-only edit): no new version, parse time refreshed
    assert repo.record_version(v1_dag, "src1 # comment", bundle_name="b", bundle_version="c2",
                               now=T0 + timedelta(1)) is None
    entry = repo.get("d")
    assert entry is not None and entry.state.latest_version == 1
    assert entry.state.last_parsed_time == T0 + timedelta(1)
    v2 = repo.record_version(parse(dag_yaml("d", command="two")), "src2", bundle_name="b", bundle_version="c3",
                             now=T0 + timedelta(2))
    assert v2 is not None and v2.version_number == 2
    # a revert is a new version whose content equals the old one
    v3 = repo.record_version(v1_dag, "src1", bundle_name="b", bundle_version="c4", now=T0 + timedelta(3))
    assert v3 is not None and v3.version_number == 3 and v3.content_hash == v1.content_hash
    assert [v.version_number for v in repo.versions("d")] == [1, 2, 3]
    assert repo.dag("d", 1) == repo.dag("d", 3) == v1_dag
    assert repo.dag("d", 2) != v1_dag and repo.dag("d") == v1_dag
    assert repo.source("d", 1) == "src1" and repo.source("d", 2) == "src2" and repo.source("d") == "src1"
    assert repo.version("d", 9) is None and repo.dag("nope") is None and repo.source("nope") is None


def test_new_dag_state_and_summary(repo: DagRepository) -> None:
    dag = parse(dag_yaml("d", tasks=3, extra="is_paused_upon_creation: false\ntags: [x]\nschedule: '@daily'"))
    repo.record_version(dag, "s", bundle_name="b", bundle_version=None, now=T0)
    (entry,) = repo.list()
    assert entry.state.is_paused is False and entry.state.bundle_name == "b" and not entry.state.is_stale
    assert entry.latest is not None and entry.latest.bundle_version is None
    assert entry.summary == DagSummary.of(dag)
    assert (entry.summary.task_count, entry.summary.tags, entry.summary.schedule) == (3, ("x",), "@daily")


def test_listing_is_one_request_and_reads_are_cheap(store: SqliteStore) -> None:
    counting = CountingStore(store)
    repo = DagRepository(counting)  # type: ignore[arg-type]
    for i in range(20):
        repo.record_version(parse(dag_yaml(f"d{i}")), "s", bundle_name="b", bundle_version="c", now=T0)
    counting.calls.clear()
    assert len(repo.list()) == 20
    assert sum(counting.calls.values()) == 1
    counting.calls.clear()
    repo.version("d3", 1)
    assert sum(counting.calls.values()) == 1
    counting.calls.clear()
    repo.dag("d3", 1)
    assert sum(counting.calls.values()) == 2  # the version, then its blob's chunks
    counting.calls.clear()
    repo.source("d3", 1)
    assert sum(counting.calls.values()) == 2
    counting.calls.clear()
    repo.record_version(parse(dag_yaml("new")), "s", bundle_name="b", bundle_version="c", now=T0,
                        current=None, known=True)
    assert counting.calls == Counter({"txn": 1})  # blobs, version and state in one transaction


def test_large_values_are_chunked_below_the_limit(repo: DagRepository, store: SqliteStore) -> None:
    source = os.urandom(900 * 1024).hex()  # ~1.8 MB of text that barely compresses
    repo.record_version(parse(dag_yaml("big")), source, bundle_name="b", bundle_version="c", now=T0)
    assert repo.source("big") == source
    sizes = [len(e.value) for e in store.list("leoflow/dags/blobs/")]
    assert len(sizes) > 3 and max(sizes) <= 256 * 1024 < MAX_VALUE_BYTES


def test_too_large_is_refused_and_nothing_is_written(repo: DagRepository) -> None:
    repo.record_version(parse(dag_yaml("d")), "ok", bundle_name="b", bundle_version="c1", now=T0)
    huge = os.urandom(9 * 1024 * 1024).hex()  # ~9 MiB even compressed
    with pytest.raises(ValueTooLarge, match=r"^source of DAG 'd' is \d+ bytes compressed, over the 8388608 byte "
                                            r"limit$"):
        repo.record_version(parse(dag_yaml("d", command="x")), huge, bundle_name="b", bundle_version="c2", now=T0)
    assert [v.version_number for v in repo.versions("d")] == [1]
    assert repo.source("d") == "ok"


def test_compare_and_set_never_duplicates_a_version(repo: DagRepository, store: SqliteStore) -> None:
    other = DagRepository(store)
    repo.record_version(parse(dag_yaml("d", command="1")), "s", bundle_name="b", bundle_version="c", now=T0)
    stale = repo.get("d")
    other.record_version(parse(dag_yaml("d", command="2")), "s", bundle_name="b", bundle_version="c", now=T0)
    # `stale` no longer matches the stored entry: the write is retried on a fresh read
    v = repo.record_version(parse(dag_yaml("d", command="3")), "s", bundle_name="b", bundle_version="c", now=T0,
                            current=stale)
    assert v is not None and v.version_number == 3
    assert [x.version_number for x in repo.versions("d")] == [1, 2, 3]


def test_state_updates(repo: DagRepository) -> None:
    repo.record_version(parse(dag_yaml("d")), "s", bundle_name="b", bundle_version="c", now=T0)
    assert repo.set_paused("d", False).is_paused is False
    state = repo.set_next_dagrun("d", logical_date=T0, data_interval_start=T0 - timedelta(1),
                                 data_interval_end=T0, run_after=T0 + timedelta(hours=1))
    assert state.next_dagrun_run_after == T0 + timedelta(hours=1)
    entry = repo.get("d")
    assert entry is not None and entry.state == state and entry.latest is not None
    with pytest.raises(NotFound, match="DAG 'nope' not found"):
        repo.set_paused("nope", True)
    assert repo.mark_stale(["d", "nope"], T0) == ["d"]
    assert repo.mark_stale(["d"], T0) == []
    stale = repo.get("d")
    assert stale is not None and stale.state.is_stale and stale.state.is_paused is False
    # the same content showing up again revives it without a new version
    assert repo.record_version(parse(dag_yaml("d")), "s", bundle_name="b", bundle_version="c", now=T0) is None
    revived = repo.get("d")
    assert revived is not None and not revived.state.is_stale and revived.state.latest_version == 1


def test_import_errors(repo: DagRepository) -> None:
    repo.apply(repo.import_error_ops("b", "x.yaml", "x.yaml:1:1: boom", T0), what="t")
    repo.apply(repo.import_error_ops("other", "y.py", "y.py:2:1: bad", T0), what="t")
    errors = repo.import_errors()
    assert [(e.filename, e.bundle_name, e.stack_trace, e.timestamp) for e in errors] == [
        ("x.yaml", "b", "x.yaml:1:1: boom", T0), ("y.py", "other", "y.py:2:1: bad", T0)]
    first_id = errors[0].import_error_id
    repo.apply(repo.import_error_ops("b", "x.yaml", "x.yaml:2:1: still", T0 + timedelta(1)), what="t")
    again = repo.import_error(first_id)
    assert again is not None and again.stack_trace == "x.yaml:2:1: still"  # the id is stable while broken
    assert [e.filename for e in repo.import_errors("b")] == ["x.yaml"]
    repo.apply(repo.clear_import_error_ops("b", "x.yaml"), what="t")
    assert repo.import_error(first_id) is None
    long = "x" * 100_000
    repo.apply(repo.import_error_ops("b", "z.py", long, T0), what="t")
    stored = repo.import_errors("b")[0].stack_trace
    assert stored.endswith("... (truncated)") and len(stored) < 70_000


def test_bundle_state_and_fetch_requests(repo: DagRepository) -> None:
    assert repo.bundle("b") is None and repo.fetch_request_index("b") == 0
    repo.request_fetch("b", T0)
    first = repo.fetch_request_index("b")
    repo.request_fetch("b", T0)
    assert repo.fetch_request_index("b") > first > 0


def test_ids_with_any_characters(repo: DagRepository) -> None:
    dag = parse(dag_yaml("odd.id-with.dots"))
    repo.record_version(replace(dag, fileloc="dir/odd file.yaml"), "s", bundle_name="my bundle",
                        bundle_version="c", now=T0)
    assert repo.get("odd.id-with.dots") is not None
    assert repo.dag("odd.id-with.dots") == replace(dag, fileloc="dir/odd file.yaml")
