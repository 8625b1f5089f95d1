"""Deleting a DAG (the API's DELETE /dags/{id}): what the repository removes and keeps, and how the
sync brings back a DAG whose file still exists (ADR 0014)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leoflow.dags.gitsource import DirectorySource
from leoflow.dags.loader import parse_yaml_text
from leoflow.dags.sync import DagSync
from leoflow.domain.dag import DAG
from leoflow.domain.serialize import dag_hash
from leoflow.store import keys
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.dags import DagRepository
from leoflow.store.repos.favorites import FavoriteRepository
from leoflow.store.sqlite import SqliteStore

from .conftest import Clock, dag_yaml

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def parse(text: str, fileloc: str = "d.yaml") -> DAG:
    parsed = parse_yaml_text(fileloc, text)
    assert parsed.ok, parsed.errors
    return parsed.dags[0]


def blob_digests(store: SqliteStore) -> set[str]:
    prefix = keys.prefix_of("leoflow", "dags", "blobs")
    return {k[len(prefix):].split("/")[0] for k in store.keys(prefix, separator=None)}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_delete_removes_the_dag_and_keeps_what_others_use(store: SqliteStore, repo: DagRepository) -> None:
    shared = "# one file defining a and b\n"
    a_versions = [parse(dag_yaml("a", command=f"v{i}"), "ab.py") for i in range(70)]  # > one txn of versions
    for i, dag in enumerate(a_versions):
        repo.record_version(dag, shared if i == 0 else f"source {i}\n", bundle_name="b", bundle_version=None,
                            now=T0 + timedelta(minutes=i))
    b = parse(dag_yaml("b"), "ab.py")
    repo.record_version(b, shared, bundle_name="b", bundle_version=None, now=T0)
    favorites = FavoriteRepository(store, Keyspace())
    favorites.add("alice", "a")
    favorites.add("alice", "b")
    favorites.add("bob", "a")
    favorites.add("a", "b")  # a user named like the DAG keeps their favorites

    assert repo.delete("a") is True
    assert repo.get("a") is None and repo.versions("a") == [] and repo.dag("a") is None
    assert [e.state.dag_id for e in repo.list()] == ["b"]
    left = blob_digests(store)
    assert not left & {dag_hash(d) for d in a_versions} and not left & {sha(f"source {i}\n") for i in range(1, 70)}
    assert left == {dag_hash(b), sha(shared)}  # b's serialized DAG and the source b still uses
    assert repo.dag("b") == b and repo.source("b") == shared
    assert favorites.for_user("alice") == {"b"} and favorites.for_user("bob") == set()
    assert favorites.for_user("a") == {"b"}
    assert repo.delete("a") is False

    again = repo.record_version(a_versions[0], shared, bundle_name="b", bundle_version=None, now=T0)
    assert again is not None and again.version_number == 1  # a new DAG: versions start again
    assert repo.dag("a") == a_versions[0]


def test_a_deleted_dag_comes_back_on_the_next_sync_while_its_file_exists(
        tmp_path: Path, repo: DagRepository, clock: Clock) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.yaml").write_text(dag_yaml("a"))
    (folder / "b.yaml").write_text(dag_yaml("b"))
    sync = DagSync(repo, DirectorySource("plain", folder))
    sync.sync_once(clock.tick())
    (folder / "a.yaml").write_text(dag_yaml("a", command="second"))
    sync.sync_once(clock.tick())
    assert [v.version_number for v in repo.versions("a")] == [1, 2]
    repo.set_paused("a", False)

    assert repo.delete("a")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["a.yaml"]  # only the file of the deleted DAG
    assert [(v.dag_id, v.version_number) for v in report.new_versions] == [("a", 1)]
    entry = repo.get("a")
    assert entry is not None and entry.state.is_paused is parse(dag_yaml("a")).is_paused_upon_creation
    assert repo.dag("a") == parse(dag_yaml("a", command="second"), "a.yaml")
    assert sync.sync_once(clock.tick()).files_parsed == []

    # its file gone: it stays deleted
    assert repo.delete("b")
    (folder / "b.yaml").unlink()
    report = sync.sync_once(clock.tick())
    assert report.files_deleted == ["b.yaml"] and report.new_versions == [] and repo.get("b") is None


def test_a_deleted_dag_of_a_broken_file_comes_back_when_the_file_is_fixed(
        tmp_path: Path, repo: DagRepository, clock: Clock) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.yaml").write_text(dag_yaml("a"))
    sync = DagSync(repo, DirectorySource("plain", folder))
    sync.sync_once(clock.tick())
    (folder / "a.yaml").write_text("dag_id: a\ntasks: [\n")
    assert sync.sync_once(clock.tick()).errors
    assert repo.delete("a")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == [] and repo.get("a") is None  # no parse loop on a broken file
    assert [e.filename for e in repo.import_errors()] == ["a.yaml"]  # the file's error stays
    (folder / "a.yaml").write_text(dag_yaml("a", command="fixed"))
    report = sync.sync_once(clock.tick())
    assert [(v.dag_id, v.version_number) for v in report.new_versions] == [("a", 1)]
    assert report.cleared_errors == ["a.yaml"] and repo.import_errors() == []
