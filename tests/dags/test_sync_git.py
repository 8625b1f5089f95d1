"""Versioning across real commits in a temporary git repository, and git failures."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from leoflow.dags.gitsource import DirectorySource, GitSource, GitSourceError, open_source, redact
from leoflow.dags.sync import DagSync, SyncReport, sync_from_config
from leoflow.store.repos.dags import DagRepository

from .conftest import Clock, GitRepo, dag_yaml

MakeSync = Callable[..., DagSync]


def versions(repo: DagRepository, dag_id: str) -> list[tuple[int, str | None, str]]:
    return [(v.version_number, v.bundle_version, v.fileloc) for v in repo.versions(dag_id)]


def test_versions_across_commits(git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync,
                                 clock: Clock) -> None:
    git_repo.write("a.yaml", dag_yaml("a", command="v1"))
    git_repo.write("b.yaml", dag_yaml("b"))
    git_repo.write("README.md", "docs\n")
    c1 = git_repo.commit("initial")
    sync = make_sync()
    report = sync.sync_once(clock.tick())
    assert report.ok and report.bundle_version == c1 and report.previous_version is None
    assert report.files_parsed == ["a.yaml", "b.yaml"]
    assert [(v.dag_id, v.version_number) for v in report.new_versions] == [("a", 1), ("b", 1)]
    assert repo.bundle("dags") is not None and repo.bundle("dags").version == c1  # type: ignore[union-attr]

    # nothing changed: nothing parsed
    assert sync.sync_once(clock.tick()).files_parsed == []

    # change a: only a.yaml is parsed; a gets version 2
    git_repo.write("a.yaml", dag_yaml("a", command="v2"))
    c2 = git_repo.commit("change a")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["a.yaml"] and report.previous_version == c1
    assert versions(repo, "a") == [(1, c1, "a.yaml"), (2, c2, "a.yaml")]
    assert repo.source("a", 2) == dag_yaml("a", command="v2")

    # no-op change (a comment): parsed, but the serialized form is equal: no version
    git_repo.write("a.yaml", "# a comment\n" + dag_yaml("a", command="v2"))
    git_repo.commit("comment")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["a.yaml"] and report.new_versions == []
    assert len(repo.versions("a")) == 2

    # a commit that touches no DAG file parses nothing
    git_repo.write("README.md", "more docs\n")
    git_repo.commit("docs")
    assert sync.sync_once(clock.tick()).files_parsed == []

    # revert the change: a new version whose content equals version 1
    git_repo.git("revert", "--no-edit", c2)
    git_repo.write("a.yaml", dag_yaml("a", command="v1"))  # the comment commit sat on top of c2
    c_revert = git_repo.commit("revert to v1")
    sync.sync_once(clock.tick())
    (v1, v2, v3) = repo.versions("a")
    assert v3.version_number == 3 and v3.bundle_version == c_revert and v3.content_hash == v1.content_hash
    assert v2.content_hash != v1.content_hash
    assert repo.dag("a", 3) == repo.dag("a", 1)

    # rename: the DAG moves file; its fileloc is part of the serialized form, so a new version
    (git_repo.path / "sub").mkdir()
    git_repo.git("mv", "b.yaml", "sub/b_renamed.yaml")
    c_rename = git_repo.commit("rename")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["sub/b_renamed.yaml"] and report.files_deleted == ["b.yaml"]
    assert report.stale == []
    assert versions(repo, "b")[-1] == (2, c_rename, "sub/b_renamed.yaml")
    entry = repo.get("b")
    assert entry is not None and not entry.state.is_stale

    # delete: the DAG becomes stale; its history stays
    git_repo.git("rm", "-q", "sub/b_renamed.yaml")
    git_repo.commit("delete b")
    report = sync.sync_once(clock.tick())
    assert report.stale == ["b"] and report.files_deleted == ["sub/b_renamed.yaml"]
    entry = repo.get("b")
    assert entry is not None and entry.state.is_stale and len(repo.versions("b")) == 2
    assert repo.source("b", 1) == dag_yaml("b")

    # bring it back unchanged from the last version: no new version, no longer stale
    git_repo.write("sub/b_renamed.yaml", dag_yaml("b"))
    git_repo.commit("restore b")
    report = sync.sync_once(clock.tick())
    assert report.new_versions == [] and report.stale == []
    entry = repo.get("b")
    assert entry is not None and not entry.state.is_stale


def test_import_errors_never_hide_other_dags_and_clear_when_fixed(
        git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync, clock: Clock) -> None:
    git_repo.write("good.yaml", dag_yaml("good"))
    git_repo.write("bad.yaml", "dag_id: bad\ntasks:\n  - task_id: t\n    retries: x\n")
    git_repo.write("broken.yaml", "dag_id: [\n")
    git_repo.commit()
    sync = make_sync()
    report = sync.sync_once(clock.tick())
    assert [e.dag_id for e in report.new_versions] == ["good"]
    assert [str(e) for e in report.errors] == [
        "bad.yaml:3:5: task 't': needs a command (or an image to run with its default entrypoint)",
        "bad.yaml:4:14: task 't': retries: expected an integer >= 0, got 'x'",
        "broken.yaml:2:1: YAML syntax error: did not find expected node content",
    ]
    errors = repo.import_errors()
    assert [(e.filename, e.bundle_name) for e in errors] == [("bad.yaml", "dags"), ("broken.yaml", "dags")]
    assert errors[0].stack_trace.splitlines()[1] == (
        "bad.yaml:4:14: task 't': retries: expected an integer >= 0, got 'x'")
    assert REGISTRY.get_sample_value("leoflow_dag_import_errors", {"bundle": "dags"}) == 2

    # fix one file: its error is cleared and its DAG appears
    git_repo.write("bad.yaml", dag_yaml("bad"))
    git_repo.commit("fix")
    report = sync.sync_once(clock.tick())
    assert report.cleared_errors == ["bad.yaml"] and [v.dag_id for v in report.new_versions] == ["bad"]
    assert [e.filename for e in repo.import_errors()] == ["broken.yaml"]
    assert REGISTRY.get_sample_value("leoflow_dag_import_errors", {"bundle": "dags"}) == 1

    # break a file that had a DAG: the last good version stays in force (not stale)
    git_repo.write("good.yaml", "dag_id: good\ntasks: oops\n")
    git_repo.commit("break good")
    report = sync.sync_once(clock.tick())
    assert report.stale == [] and [e.filename for e in report.errors] == ["good.yaml"]
    entry = repo.get("good")
    assert entry is not None and not entry.state.is_stale and entry.state.latest_version == 1

    # delete a broken file: its import error goes away
    git_repo.git("rm", "-q", "broken.yaml")
    git_repo.commit("rm broken")
    sync.sync_once(clock.tick())
    assert [e.filename for e in repo.import_errors()] == ["good.yaml"]


def test_duplicate_dag_id_across_files(git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync,
                                       clock: Clock) -> None:
    git_repo.write("a.yaml", dag_yaml("same", command="a"))
    git_repo.commit()
    sync = make_sync()
    sync.sync_once(clock.tick())
    git_repo.write("b.yaml", dag_yaml("same", command="b"))
    git_repo.commit()
    report = sync.sync_once(clock.tick())
    assert [str(e) for e in report.errors] == ["b.yaml:1:1: dag_id 'same' is already defined in a.yaml"]
    assert repo.dag("same") is not None and repo.dag("same").fileloc == "a.yaml"  # type: ignore[union-attr]
    # the first file goes away: the other definition takes over without being touched itself
    git_repo.git("rm", "-q", "a.yaml")
    git_repo.commit()
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["b.yaml"] and report.stale == [] and report.cleared_errors == ["b.yaml"]
    assert repo.dag("same").fileloc == "b.yaml"  # type: ignore[union-attr]
    assert repo.import_errors() == []


def test_python_files_and_their_helpers(git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync,
                                        clock: Clock) -> None:
    git_repo.write("helpers.py", "IMAGE = 'alpine:1'\n")
    git_repo.write("pydag.py", "from helpers import IMAGE\nfrom leoflow.sdk import DAG, Task\n"
                               "with DAG('pydag'):\n    Task('t', image=IMAGE)\n")
    git_repo.commit()
    sync = make_sync()
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["helpers.py", "pydag.py"] and [v.dag_id for v in report.new_versions] == ["pydag"]
    git_repo.write("helpers.py", "IMAGE = 'alpine:2'\n")
    git_repo.commit("bump helper")
    report = sync.sync_once(clock.tick())
    assert report.files_parsed == ["helpers.py", "pydag.py"]  # the DAG file imports the helper: re-evaluated
    dag = repo.dag("pydag")
    assert dag is not None and dag.tasks["t"].image == "alpine:2"
    assert repo.source("pydag", 2) == (git_repo.path / "pydag.py").read_text()


def test_subdir_and_ignore_file(git_repo: GitRepo, repo: DagRepository, tmp_path: Path, clock: Clock) -> None:
    git_repo.write("dags/a.yaml", dag_yaml("a"))
    git_repo.write("dags/skip/b.yaml", "not: a dag\n")
    git_repo.write("dags/.leoflowignore", "# CI files\nskip\n")
    git_repo.write("ci.yaml", "not: a dag either\n")
    git_repo.commit()
    source = open_source("sub", str(git_repo.path / "dags"), "main", tmp_path / "cache")
    assert isinstance(source, GitSource) and source.subdir == "dags"
    report = DagSync(repo, source).sync_once(clock.tick())
    assert report.errors == [] and report.files_parsed == ["a.yaml"]


def test_plain_directory_bundle(tmp_path: Path, repo: DagRepository, clock: Clock) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "a.yaml").write_text(dag_yaml("a"))
    source = open_source("plain", str(folder), "HEAD", tmp_path / "cache")
    assert isinstance(source, DirectorySource)
    sync = DagSync(repo, source)
    report = sync.sync_once(clock.tick())
    assert report.bundle_version is None and [v.dag_id for v in report.new_versions] == ["a"]
    assert sync.sync_once(clock.tick()).files_parsed == []
    (folder / "a.yaml").write_text(dag_yaml("a", command="changed"))
    assert sync.sync_once(clock.tick()).files_parsed == ["a.yaml"]
    assert len(repo.versions("a")) == 2


# ---- git failures ---------------------------------------------------------------------------

def _assert_failure_keeps_state(sync: DagSync, repo: DagRepository, clock: Clock, kind: str,
                                message_start: str) -> SyncReport:
    before = [(e.state, e.latest) for e in repo.list()]
    report = sync.sync_once(clock.tick())
    assert not report.ok and report.git_error_kind == kind, report.git_error
    assert report.git_error is not None and report.git_error.startswith(message_start), report.git_error
    assert [(e.state, e.latest) for e in repo.list()] == before
    bundle = repo.bundle(sync.name)
    assert bundle is not None and bundle.last_error == report.git_error
    return report


def test_unreachable_remote_keeps_the_last_good_versions(git_repo: GitRepo, repo: DagRepository,
                                                         make_sync: MakeSync, clock: Clock, tmp_path: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    c1 = git_repo.commit()
    sync = make_sync()
    sync.sync_once(clock.tick())
    moved = tmp_path / "moved-away"
    git_repo.path.rename(moved)
    _assert_failure_keeps_state(sync, repo, clock, "unreachable", "git remote unreachable: ")
    assert repo.bundle("dags").version == c1  # type: ignore[union-attr]
    assert REGISTRY.get_sample_value("leoflow_dag_syncs_total", {"bundle": "dags", "result": "git_error"}) >= 1
    moved.rename(git_repo.path)  # the remote is back: the error clears
    report = sync.sync_once(clock.tick())
    assert report.ok and repo.bundle("dags").last_error is None  # type: ignore[union-attr]


def test_closed_port_is_unreachable(repo: DagRepository, make_sync: MakeSync, clock: Clock) -> None:
    sync = make_sync(url="http://user:tok3n@127.0.0.1:9/repo.git")
    report = _assert_failure_keeps_state(sync, repo, clock, "unreachable", "git remote unreachable: ")
    assert "tok3n" not in (report.git_error or "")


class _AuthRequired(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRequired)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/team/dags.git"
    server.shutdown()
    server.server_close()


def test_auth_failure(repo: DagRepository, make_sync: MakeSync, clock: Clock, auth_server: str) -> None:
    sync = make_sync(url=auth_server.replace("http://", "http://bot:s3cr3t@"))
    report = _assert_failure_keeps_state(sync, repo, clock, "auth", "git authentication failed: ")
    assert "s3cr3t" not in (report.git_error or "")


def test_unknown_ref(git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync, clock: Clock) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    git_repo.commit()
    _assert_failure_keeps_state(make_sync(ref="no-such-branch"), repo, clock, "ref", "git ref not found: ")


def test_force_push_is_reported_and_applied(git_repo: GitRepo, repo: DagRepository, make_sync: MakeSync,
                                            clock: Clock) -> None:
    git_repo.write("a.yaml", dag_yaml("a", command="1"))
    git_repo.commit("one")
    git_repo.write("a.yaml", dag_yaml("a", command="2"))
    c2 = git_repo.commit("two")
    sync = make_sync()
    sync.sync_once(clock.tick())
    git_repo.git("reset", "-q", "--hard", "HEAD~1")
    git_repo.write("a.yaml", dag_yaml("a", command="3"))
    c3 = git_repo.commit("rewritten")
    report = sync.sync_once(clock.tick())
    assert report.ok and report.bundle_version == c3
    assert report.warnings == [f"history rewritten: main moved from {c2[:12]} to {c3[:12]}, which does not "
                               f"contain it (force push?); applying {c3[:12]}"]
    assert [v.bundle_version for v in repo.versions("a")] == [c2, c3]
    assert sync.sync_once(clock.tick()).warnings == []  # reported once, not on every later pass


def test_redact() -> None:
    assert redact("fatal: unable to access 'https://x:ghp_123@github.com/a/b/'") == (
        "fatal: unable to access 'https://***@github.com/a/b/'")


def test_refresh_without_fetch_uses_the_cache(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    c1 = git_repo.commit()
    source = GitSource("x", str(git_repo.path), "main", tmp_path / "cache")
    assert source.refresh().version == c1
    git_repo.write("a.yaml", dag_yaml("a", command="new"))
    git_repo.commit()
    assert source.refresh(fetch=False).version == c1
    with pytest.raises(GitSourceError):
        GitSource("y", str(tmp_path / "nothing"), "main", tmp_path / "cache").refresh(fetch=False)


# ---- the loop -------------------------------------------------------------------------------

def test_loop_syncs_on_wake_and_on_store_requests_and_stops(git_repo: GitRepo, repo: DagRepository,
                                                            make_sync: MakeSync, clock: Clock) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    git_repo.commit()
    sync = make_sync()
    reports: list[SyncReport] = []
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop, wake),
                              kwargs={"interval": 3600, "request_poll": 0.05, "on_report": reports.append,
                                      "clock": clock.tick})
    thread.start()
    try:
        _wait(lambda: len(reports) == 1)  # the first pass runs at once
        git_repo.write("b.yaml", dag_yaml("b"))
        git_repo.commit()
        wake.set()  # the server's webhook in this process
        _wait(lambda: len(reports) == 2)
        assert [v.dag_id for v in reports[1].new_versions] == ["b"]
        git_repo.write("c.yaml", dag_yaml("c"))
        git_repo.commit()
        repo.request_fetch("dags", clock.now)  # a webhook received by another process
        _wait(lambda: len(reports) == 3)
        assert [v.dag_id for v in reports[2].new_versions] == ["c"]
    finally:
        stop.set()
        wake.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert REGISTRY.get_sample_value("leoflow_dag_versions_created_total", {"bundle": "dags"}) >= 3
    assert REGISTRY.get_sample_value("leoflow_dag_files_parsed_total", {"bundle": "dags"}) >= 3
    assert REGISTRY.get_sample_value("leoflow_dag_sync_seconds_count", {"bundle": "dags"}) >= 3


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sync_from_config_loads_the_examples_by_default(repo: DagRepository, tmp_path: Path, clock: Clock) -> None:
    from leoflow.config import load

    config = load(env={"LEOFLOW_HOME": str(tmp_path / "home")})
    sync = sync_from_config(config, repo)
    assert isinstance(sync.source, DirectorySource) and sync.name == "dags-folder"
    report = sync.sync_once(clock.tick())
    assert report.errors == [] and len(report.new_versions) == 6
    entry = repo.get("python_dag")
    assert entry is not None and entry.summary is not None and entry.summary.task_count == 5


def test_sync_from_config_with_a_git_repo(git_repo: GitRepo, repo: DagRepository, tmp_path: Path,
                                          clock: Clock) -> None:
    from leoflow.config import load

    git_repo.write("dags/a.yaml", dag_yaml("a"))
    sha = git_repo.commit()
    config = load(env={"LEOFLOW_HOME": str(tmp_path / "home"), "LEOFLOW_DAGS__REPO": str(git_repo.path),
                       "LEOFLOW_DAGS__SUBDIR": "dags", "LEOFLOW_DAGS__REF": "main"})
    report = sync_from_config(config, repo).sync_once(clock.tick())
    assert report.bundle_version == sha and [v.fileloc for v in report.new_versions] == ["a.yaml"]
    assert (tmp_path / "home" / "bundles" / "dags-folder" / ".git").is_dir()


def test_a_dag_too_large_to_store_is_an_import_error(git_repo: GitRepo, repo: DagRepository,
                                                     make_sync: MakeSync, clock: Clock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import leoflow.store.repos.dags as dags_module

    git_repo.write("a.yaml", dag_yaml("a"))
    git_repo.write("b.yaml", dag_yaml("b"))
    git_repo.commit()
    sync = make_sync()
    sync.sync_once(clock.tick())
    monkeypatch.setattr(dags_module, "MAX_BLOB_BYTES", 100)
    git_repo.write("a.yaml", dag_yaml("a", command="changed"))
    git_repo.commit()
    report = sync.sync_once(clock.tick())
    (error,) = report.errors
    assert re.fullmatch(r"a\.yaml:1:1: serialized DAG 'a' is \d+ bytes compressed, over the 100 byte limit",
                        str(error))
    assert [e.filename for e in repo.import_errors()] == ["a.yaml"]
    assert len(repo.versions("a")) == 1 and repo.dag("b") is not None


def test_files_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    from leoflow.dags.loader import MAX_SOURCE_BYTES, load_file

    (tmp_path / "huge.yaml").write_text("# " + "x" * MAX_SOURCE_BYTES + "\n")
    (error,) = load_file(tmp_path, "huge.yaml").errors
    assert str(error) == f"huge.yaml:1:1: file is {MAX_SOURCE_BYTES + 3} bytes; DAG files are limited to " \
                         f"{MAX_SOURCE_BYTES} bytes"


def test_a_damaged_cache_is_rebuilt(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    sha = git_repo.commit()
    cache = tmp_path / "cache"
    (cache / "x" / ".git").mkdir(parents=True)  # an empty, invalid .git directory
    snapshot = GitSource("x", str(git_repo.path), "main", cache).refresh()
    assert snapshot.version == sha and list(snapshot.blobs) == ["a.yaml"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    with pytest.raises(GitSourceError) as err:
        GitSource("x", str(git_repo.path), "main", blocked).refresh()
    assert err.value.kind == "repository" and str(err.value).startswith("cannot prepare the git cache at ")


def test_an_annotated_tag_ref_reports_its_commit(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    sha = git_repo.commit()
    git_repo.git("tag", "-a", "v1.0", "-m", "release")
    assert GitSource("t", str(git_repo.path), "v1.0", tmp_path / "cache").refresh().version == sha
