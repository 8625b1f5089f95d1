"""A credential in an http(s) DAG repository URL reaches the server, never argv or .git/config."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import git
import pytest

from leoflow.dags.gitsource import GitSource, GitSourceError, split_credentials
from tests.fakes.git_http import serve_git

from .conftest import GitRepo, dag_yaml

SECRET = "s3cr3t/t0ken"  # a "/" must be percent-encoded in the URL and decoded for the header


def test_split_credentials() -> None:
    remote = split_credentials("https://bot:s3cr3t%2Ft0ken@git.example.com:8443/team/dags.git")
    assert remote.url == "https://git.example.com:8443/team/dags.git"
    header = base64.b64encode(b"bot:" + SECRET.encode()).decode()
    assert remote.env == {"GIT_CONFIG_COUNT": "1",
                          "GIT_CONFIG_KEY_0": "http.https://git.example.com:8443/.extraHeader",
                          "GIT_CONFIG_VALUE_0": f"Authorization: Basic {header}"}
    assert SECRET not in repr(remote) and header not in repr(remote)
    assert split_credentials("https://ghp_tok@github.com/a/b").env["GIT_CONFIG_VALUE_0"].endswith(
        base64.b64encode(b"ghp_tok:").decode())
    for untouched in ("https://github.com/a/b.git", "ssh://git@github.com/a/b.git", "git@github.com:a/b.git",
                      "/srv/git/dags"):
        assert split_credentials(untouched).url == untouched and split_credentials(untouched).env == {}


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git command gitpython starts, as its argv, one line each (the real git runs it)."""
    log = tmp_path / "git-argv.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(git.Git, "GIT_PYTHON_GIT_EXECUTABLE", str(wrapper))
    return log


def test_fetch_over_http_authenticates_without_exposing_the_credential(git_repo: GitRepo, tmp_path: Path,
                                                                       argv_log: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    head = git_repo.commit("one")
    with serve_git(git_repo.path.parent, "bot", SECRET) as server:
        url = server.url.replace("http://", "http://bot:s3cr3t%2Ft0ken@") + f"{git_repo.path.name}/.git"
        source = GitSource("dags", url, "main", tmp_path / "cache")
        snapshot = source.refresh()
        assert snapshot.version == head and set(snapshot.blobs) == {"a.yaml"}
        git_repo.write("b.yaml", dag_yaml("b"))
        second = git_repo.commit("two")
        assert source.refresh().version == second  # later fetches authenticate too
        good = "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()
        assert good in server.authorizations
    config = (source.path / ".git" / "config").read_text()
    assert "s3cr3t" not in config and "bot" not in config and server.url in config
    argv = argv_log.read_text()
    assert "fetch" in argv and "s3cr3t" not in argv
    assert base64.b64encode(f"bot:{SECRET}".encode()).decode() not in argv


def test_a_cache_cloned_with_the_credential_in_its_config_is_cleaned(git_repo: GitRepo, tmp_path: Path) -> None:
    """A clone made before credentials moved out of the URL gets its remote rewritten on first use."""
    git_repo.write("a.yaml", dag_yaml("a"))
    git_repo.commit("one")
    with serve_git(git_repo.path.parent, "bot", "pw") as server:
        clean = server.url + f"{git_repo.path.name}/.git"
        cache = tmp_path / "cache" / "dags"
        cache.mkdir(parents=True)
        git.Repo.init(cache).git.remote("add", "origin", clean.replace("http://", "http://bot:pw@"))
        GitSource("dags", clean.replace("http://", "http://bot:pw@"), "main", tmp_path / "cache").refresh()
    assert ":pw@" not in (cache / ".git" / "config").read_text()


def test_a_wrong_credential_is_an_auth_failure_without_the_secret(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.write("a.yaml", dag_yaml("a"))
    git_repo.commit("one")
    with serve_git(git_repo.path.parent, "bot", "right") as server:
        url = server.url.replace("http://", "http://bot:wr0ng@") + f"{git_repo.path.name}/.git"
        with pytest.raises(GitSourceError) as err:
            GitSource("dags", url, "main", tmp_path / "cache").refresh()
    assert err.value.kind == "auth" and "wr0ng" not in str(err.value)
    assert os.environ.get("GIT_CONFIG_COUNT") is None  # the credential stayed in git's environment only
