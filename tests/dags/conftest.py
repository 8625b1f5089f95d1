"""Fixtures for the DAG-loading tests: real git repositories, the real SQLite store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leoflow.dags.gitsource import GitSource
from leoflow.dags.loader import PythonLimits
from leoflow.dags.sync import DagSync
from leoflow.store.repos.dags import DagRepository
from leoflow.store.sqlite import SqliteStore

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A real git repository the tests commit to, as a DAG repository's authors would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        done = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True,
                              timeout=30, check=True)
        return done.stdout.strip()

    def write(self, name: str, text: str) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "dag-repo")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "leoflow.db")
    yield s
    s.close()


@pytest.fixture
def repo(store: SqliteStore) -> DagRepository:
    return DagRepository(store)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_sync(repo: DagRepository, git_repo: GitRepo, tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(url: str | None = None, ref: str = "main", name: str = "dags") -> DagSync:
        source = GitSource(name, url or str(git_repo.path), ref, tmp_path / "cache")
        return DagSync(repo, source, PythonLimits(timeout=10, memory_mb=512))

    return make


def dag_yaml(dag_id: str, *, command: str = "hi", extra: str = "", tasks: int = 1) -> str:
    lines = [f"dag_id: {dag_id}", extra, "tasks:"] if extra else [f"dag_id: {dag_id}", "tasks:"]
    for i in range(tasks):
        lines.append(f"  - task_id: t{i}")
        lines.append(f'    command: ["echo", "{command}"]')
        if i:
            lines.append(f"    upstream: [t{i - 1}]")
    return "\n".join(lines) + "\n"
