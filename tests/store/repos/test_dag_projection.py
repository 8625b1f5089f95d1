"""The DAG repository's in-process mirrors (projection=True): same answers as a scan, other
writers via the watch, read-your-writes, no store request per list, the parsed-DAG cache."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from leoflow.domain.dag import DAG, Task
from leoflow.store.port import Store
from leoflow.store.repos import Repositories
from leoflow.store.repos.dags import DagRepository
from tests.processes import CountingStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_dag(dag_id: str, command: str = "true", tags: tuple[str, ...] = ()) -> DAG:
    return DAG(dag_id=dag_id, tasks={"t": Task("t", command=(command,))}, tags=tags, fileloc=f"{dag_id}.yaml")


def record(repo: DagRepository, dag: DAG) -> None:
    repo.record_version(dag, f"dag_id: {dag.dag_id}\n", bundle_name="b", bundle_version="c1", now=T0)


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)




def test_mirror_answers_like_a_scan_and_follows_other_writers(store: Store) -> None:
    writer = DagRepository(store, "lf")
    for name in ("b", "a", "c"):
        record(writer, make_dag(name, tags=("x",)))
    writer.apply(writer.import_error_ops("b", "broken.yaml", "broken.yaml:1:1: boom", T0), what="seed")
    reader = DagRepository(store, "lf", projection=True, projection_wait=0.05)
    try:
        assert reader.list() == writer.list()
        assert [e.state.dag_id for e in reader.list()] == ["a", "b", "c"]
        assert reader.import_errors() == writer.import_errors() and reader.import_errors("other") == []
        # another process's writes arrive through the blocking watch
        writer.set_paused("a", True)
        record(writer, make_dag("d"))
        record(writer, make_dag("c", command="changed"))
        writer.delete("b")
        writer.apply(writer.clear_import_error_ops("b", "broken.yaml")
                     + writer.import_error_ops("b", "other.py", "other.py:2:1: bad", T0), what="seed")
        eventually(lambda: reader.list() == writer.list() and reader.import_errors() == writer.import_errors())
        got = {e.state.dag_id: e for e in reader.list()}
        assert set(got) == {"a", "c", "d"} and got["a"].state.is_paused
        assert got["c"].latest is not None and got["c"].latest.version_number == 2
        assert [e.filename for e in reader.import_errors()] == ["other.py"]
    finally:
        reader.close()


def test_read_your_writes_without_the_watch(store: Store) -> None:
    """With the watch stopped, only the repository's own bookkeeping can make writes visible."""
    repo = DagRepository(store, "lf", projection=True, projection_wait=0.05)
    record(repo, make_dag("a"))
    repo.close()
    record(repo, make_dag("b"))
    repo.set_paused("a", True)
    repo.apply(repo.import_error_ops("b", "x.yaml", "x.yaml:1:1: boom", T0), what="seed")
    got = {e.state.dag_id: e for e in repo.list()}
    assert set(got) == {"a", "b"} and got["a"].state.is_paused and got["a"].index == repo.get("a").index  # type: ignore[union-attr]
    assert [(e.filename, e.import_error_id) for e in repo.import_errors()] == \
        [(e.filename, e.import_error_id) for e in DagRepository(store, "lf").import_errors()]
    repo.delete("a")
    repo.apply(repo.clear_import_error_ops("b", "x.yaml"), what="seed")
    assert [e.state.dag_id for e in repo.list()] == ["b"] and repo.import_errors() == []


def test_a_listing_older_than_a_local_write_does_not_revert_it(store: Store) -> None:
    repo = DagRepository(store, "lf", projection=True, projection_wait=0.05)
    record(repo, make_dag("a"))
    repo.close()  # the test plays the watch's part
    mirror = repo._entries
    assert mirror is not None
    old = store.watch(mirror.prefix, index=0, wait=0, recurse=True)
    repo.set_paused("a", True)
    mirror._apply(old.index, old.entries)  # a watch answer taken before the pause
    assert repo.list()[0].state.is_paused
    mirror.refresh()  # a current answer: the store agrees, the local record is dropped
    assert repo.list()[0].state.is_paused and mirror._local == {}


def test_lists_cost_no_store_request_and_parsed_dags_are_cached(store: Store) -> None:
    counting = CountingStore(store)
    repo = DagRepository(counting, "lf", projection=True, projection_wait=0.05)  # type: ignore[arg-type]
    try:
        for name in ("a", "b"):
            record(repo, make_dag(name))
        repo.close()  # no background watch: every request counted below is the call's own
        counting.calls.clear()
        for _ in range(3):
            assert len(repo.list()) == 2 and repo.import_errors() == []
        assert sum(counting.calls.values()) == 0
        first = repo.dag("a")
        assert first is not None and first.dag_id == "a"
        counting.calls.clear()
        # The latest version comes from the mirrored entry; the blob is not read or parsed again.
        assert repo.dag("a") is first and repo.get("a") is not None
        assert repo.version("a", 1) is not None and repo.dag("a", 1) is first
        assert sum(counting.calls.values()) == 0
        record(repo, make_dag("a", command="false"))  # version 2 (the mirror sees our own write)
        counting.calls.clear()
        assert repo.version("a", 1) is not None  # an older version is one get
        assert counting.calls == Counter({"get": 1})
    finally:
        repo.close()


def test_repositories_with_projection_mirror_the_dags(store: Store) -> None:
    writer = Repositories.open(store, root="lf")
    record(writer.dags, make_dag("a"))
    reader = Repositories.open(store, root="lf", projection=True, projection_wait=0.05)
    try:
        assert reader.dags._entries is not None and [e.state.dag_id for e in reader.dags.list()] == ["a"]
        assert writer.dags._entries is None
    finally:
        reader.close()
        writer.close()
