"""What only the embedded store must prove: several processes sharing one file (watch across
processes, concurrent CAS writers, session expiry seen by another process), fork safety, a busy
database reported as unavailable, tombstone reaping that never moves an index backwards."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from leoflow.config import Config, StoreConfig
from leoflow.store.consul import ConsulStore
from leoflow.store.factory import open_store, sqlite_path
from leoflow.store.port import CheckNotExists, Set, StoreError, StoreUnavailable, WatchResult
from leoflow.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


_WRITER = """
import sys, time
from leoflow.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
time.sleep(float(sys.argv[2]))
store.put("shared/key", b"from-child")
"""

_INCREMENTER = """
import sys
from leoflow.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
done = 0
while done < int(sys.argv[2]):
    entry = store.get("counter")
    if store.put("counter", str(int(entry.value) + 1).encode(), cas=entry.modify_index):
        done += 1
print(done)
"""

_LOCK_AND_EXIT = """
import sys
from leoflow.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1], session_ttl_min=0.01)
session = store.session_create(name="child", ttl=0.3, lock_delay=0)
assert store.put("lock", b"child", acquire=session)
print(session)
"""


def test_watch_sees_a_write_from_another_process(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    store.put("shared/other", b"1")
    first = store.watch("shared/", index=0, wait=1, recurse=True)
    child = _python(_WRITER, str(db), "0.3")
    try:
        got: list[WatchResult] = []
        watcher = threading.Thread(daemon=True, target=lambda: got.append(
            store.watch("shared/", index=first.index, wait=60, recurse=True)))
        watcher.start()
        watcher.join(30)  # the write wakes it; waiting out its 60 s would leave it alive
        assert not watcher.is_alive() and got
        result = got[0]
        assert [e.value for e in result.entries] == [b"from-child", b"1"]
        assert result.index > first.index
    finally:
        assert child.wait(timeout=30) == 0, child.stderr.read() if child.stderr else ""


def test_two_processes_cas_increment_without_lost_updates(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db)
    store.put("counter", b"0")
    per_child = 150
    children = [_python(_INCREMENTER, str(db), str(per_child)) for _ in range(2)]
    outputs = [c.communicate(timeout=120) for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    assert [int(out) for out, _ in outputs] == [per_child, per_child]
    assert int(store.get("counter").value) == 2 * per_child


def test_session_of_an_exited_process_expires_for_everyone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db, session_ttl_min=0.01)
    child = _python(_LOCK_AND_EXIT, str(db))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    session = out.strip()
    entry = store.get("lock")
    assert entry.session == session
    deadline = time.monotonic() + 0.6 + 3
    index = entry.modify_index
    while time.monotonic() < deadline and store.get("lock").session is not None:
        index = max(store.watch("lock", index=index, wait=0.5).index, 1)
    assert store.get("lock").session is None
    assert store.session_info(session) is None


def _forked_put(store: SqliteStore, value: bytes) -> None:
    store.put("forked", value)


def test_store_survives_fork(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.put("before", b"1")  # the parent has an open connection now
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_forked_put, args=(store, b"child"))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    assert store.get("forked").value == b"child"
    assert store.get("before").value == b"1"


def test_busy_database_is_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteStore(db, busy_timeout=0.1)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.put("k", b"v")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.get("k") is None
    assert store.put("k", b"v")


def test_tombstone_reaping_never_moves_a_prefix_index_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", tombstone_ttl=0.0)
    store.put("p/a", b"1")
    store.put("p/b", b"1")
    store.delete("p/b")
    before = store.watch("p/", index=0, wait=0, recurse=True).index
    store._writes = 255  # the next write reaps tombstones
    time.sleep(0.01)
    store.put("other", b"x")
    after = store.watch("p/", index=0, wait=0, recurse=True).index
    assert after >= before


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    SqliteStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE meta SET schema_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(db)


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")


def test_txn_failure_still_commits_session_reaping(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", session_ttl_min=0.01)
    session = store.session_create(name="s", ttl=0.05, lock_delay=0)
    store.put("lock", b"x", acquire=session)
    time.sleep(0.15)
    result = store.txn([Set("a", b"1"), CheckNotExists("a")])  # fails: its own Set created "a"
    assert not result.ok and result.errors[0].op_index == 1
    assert store.get("a") is None
    assert store.get("lock").session is None  # the expired session was reaped all the same


def test_open_store_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEOFLOW_HOME", str(tmp_path / "home"))
    config = Config()
    assert sqlite_path(config) == tmp_path / "home" / "leoflow.db"
    store = open_store(config)
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "home" / "leoflow.db"
    store.close()
    custom = Config(store=StoreConfig(sqlite_path=str(tmp_path / "x.db")))
    assert isinstance(open_store(custom), SqliteStore)
    assert isinstance(open_store(Config(store=StoreConfig(backend="consul"))), ConsulStore)
    with pytest.raises(StoreError, match=r"store\.backend"):
        open_store(Config(store=StoreConfig(backend="etcd")))


def test_close_during_a_blocked_watch_wakes_it_without_crashing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.put("w", b"1")
    index = store.get("w").modify_index
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            store.watch("w", index=index, wait=20)
        except StoreError as exc:
            errors.append(exc)

    watchers = [threading.Thread(target=watch) for _ in range(4)]
    for thread in watchers:
        thread.start()
    time.sleep(0.2)
    store.close()
    for thread in watchers:  # each watch waits 20 s: alive after 5 s means close did not wake it
        thread.join(5)
    assert not any(t.is_alive() for t in watchers)
    assert len(errors) == 4 and all("closed" in str(e) for e in errors)


def test_watch_never_misses_a_write_racing_its_first_read(tmp_path: Path) -> None:
    """A write right as a watch starts must end the watch with the change, not after its wait."""
    store = SqliteStore(tmp_path / "race.db")
    try:
        store.put("q/seed", b"0")
        for i in range(150):
            index = store.watch("q/", index=0, wait=0, recurse=True).index
            result: list[int] = []
            watcher = threading.Thread(
                target=lambda idx=index, out=result: out.append(
                    store.watch("q/", index=idx, wait=5, recurse=True).index)
            )
            watcher.start()
            store.put(f"q/{i}", b"x")
            watcher.join(timeout=10)
            assert result and result[0] > index, f"iteration {i}: the watch returned without the write"
    finally:
        store.close()
