"""Where a bundle's files come from: a git repository (URL or local path) at a ref, or a plain directory.

A ``refresh`` yields a ``Snapshot``: the commit it is at, the directory holding the files, and a
git blob id per file. The sync diffs blob ids against what it processed last, so "what changed
since the last processed commit" needs no history walk and survives force pushes and reverts.

Git runs through gitpython with prompts disabled (a missing credential fails at once instead of
hanging) and a time limit. Failures are classified (unreachable, auth, ref, ...) with credentials
scrubbed from every message, and leave the cache at the last good commit.

A credential in an http(s) URL (``https://user:token@host/repo``) never reaches git's argv (world
readable in ``/proc/*/cmdline``) nor the clone's ``.git/config``: the remote is stored without
it, and the fetch gets it as an ``Authorization`` header through ``GIT_CONFIG_*`` environment
variables, scoped to that host.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from leoflow.dags.loader import IgnoreRules, is_candidate

FailureKind = Literal["unreachable", "auth", "ref", "repository", "git"]
TARGET_REF = "refs/leoflow/target"
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass(frozen=True)
class RemoteUrl:
    """A remote URL without its credential, and what git needs to send that credential."""

    url: str
    env: dict[str, str]  # GIT_CONFIG_* variables for the commands that talk to the remote

    def __repr__(self) -> str:  # the env holds the secret: keep it out of reprs and tracebacks
        return f"RemoteUrl({self.url!r}, env=<{len(self.env)} variables>)"


def split_credentials(url: str) -> RemoteUrl:
    """Move ``user:token@`` of an http(s) URL into a host-scoped ``http.extraHeader``.

    Other URLs (ssh, local paths) are returned as they are: an ssh user name is not a secret.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return RemoteUrl(url, {})
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    scope = f"{parts.scheme.lower()}://{hostport}/"
    return RemoteUrl(clean, {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{scope}.extraHeader",
                             "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}"})


def redact(text: str) -> str:
    """Hide ``user:token@`` in URLs: git echoes the remote URL in its errors."""
    return _USERINFO.sub("***@", text)


class GitSourceError(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind = kind
        super().__init__(redact(message))


@dataclass(frozen=True)
class Snapshot:
    version: str | None  # commit sha; None for a plain directory
    root: Path  # the directory whose files the blob ids describe (the bundle's subdir applied)
    blobs: dict[str, str]  # fileloc -> blob id of every candidate file (YAML, and .py DAGs or helpers)
    warnings: tuple[str, ...] = ()


def _classify(exc: git.GitCommandError) -> GitSourceError:
    stderr = redact(str(exc.stderr or "")).strip().replace("stderr: ", "").strip("'\n ")
    text = stderr.lower()
    if any(s in text for s in ("authentication failed", "could not read username", "permission denied",
                               "terminal prompts disabled", "access denied", "403")):
        return GitSourceError("auth", f"git authentication failed: {stderr}")
    if any(s in text for s in ("couldn't find remote ref", "invalid refspec", "not our ref", "unknown revision")):
        return GitSourceError("ref", f"git ref not found: {stderr}")
    if any(s in text for s in ("could not resolve host", "unable to access", "connection refused", "timed out",
                               "could not read from remote", "does not appear to be a git repository",
                               "no such file or directory", "not a git repository", "repository not found")):
        return GitSourceError("unreachable", f"git remote unreachable: {stderr}")
    if exc.status == -9 or "kill_after_timeout" in str(exc):
        return GitSourceError("unreachable", "git timed out talking to the remote")
    return GitSourceError("git", f"git failed: {stderr or exc}")


class GitSource:
    """A bundle in git: cloned once into ``cache_dir``, fetched on every refresh."""

    def __init__(self, name: str, url: str, ref: str = "HEAD", cache_dir: Path | str = ".",
                 subdir: str = "", timeout: float = 120.0) -> None:
        self.name = name
        self._remote = split_credentials(url)
        self.url = self._remote.url  # what git's argv and .git/config see: no credential
        self.ref = ref or "HEAD"
        self.subdir = subdir.strip("/")
        self.timeout = timeout
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "bundle"
        self.path = Path(cache_dir) / safe
        self._last: Snapshot | None = None  # what this process last checked out and listed

    def _repo(self) -> git.Repo:
        if (self.path / ".git").is_dir():
            try:
                repo = git.Repo(self.path)
            except git.InvalidGitRepositoryError:  # the cache is ours: a damaged one is rebuilt
                shutil.rmtree(self.path)
                return self._repo()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.path)
        repo.git.update_environment(**_GIT_ENV)
        if "origin" in [r.name for r in repo.remotes]:
            if repo.remotes.origin.url != self.url:
                repo.git.remote("set-url", "origin", self.url)
        else:
            repo.git.remote("add", "origin", self.url)
        return repo

    def _rev(self, repo: git.Repo, ref: str) -> str | None:
        try:
            return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except git.GitCommandError:
            return None

    def refresh(self, fetch: bool = True) -> Snapshot:
        """Fetch the ref (unless ``fetch`` is False and a commit is cached) and check it out.

        Processes sharing a cache directory take turns (a lock file next to the clone), so two
        of them never run git on the same working tree at once."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise GitSourceError("repository", f"cannot prepare the git cache at {self.path}: {exc}") from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._refresh(fetch)

    def _refresh(self, fetch: bool) -> Snapshot:
        try:
            repo = self._repo()
        except (git.GitError, OSError) as exc:
            raise GitSourceError("repository", f"cannot prepare the git cache at {self.path}: {exc}") from exc
        previous = self._last.version if self._last is not None else self._rev(repo, TARGET_REF)
        warnings: list[str] = []
        forced = False
        if fetch or previous is None:
            try:
                with repo.git.custom_environment(**self._remote.env):
                    _, _, progress = repo.git.fetch("--force", "--no-tags", "origin", f"+{self.ref}:{TARGET_REF}",
                                                    kill_after_timeout=self.timeout, with_extended_output=True)
            except git.GitCommandError as exc:
                raise _classify(exc) from exc
            # git marks a non-fast-forward update of the target ref this way: no merge-base call needed
            forced = "(forced update)" in str(progress)
        current = self._rev(repo, TARGET_REF)  # peeled: an annotated tag gives its commit
        if current is None:
            raise GitSourceError("ref", f"ref {self.ref!r} of {redact(self.url)} does not name a commit")
        if previous and previous != current and forced:
            warnings.append(f"history rewritten: {self.ref} moved from {previous[:12]} to {current[:12]}, "
                            f"which does not contain it (force push?); applying {current[:12]}")
        if self._last is not None and self._last.version == current and not warnings:
            return self._last  # nothing moved: the checkout and its listing are still valid
        try:
            repo.git.checkout("--force", "--detach", current)
            repo.git.clean("-ffdxq")
            listing = repo.git.ls_tree("-r", "-z", "--full-tree", current, "--", self.subdir or ".")
        except git.GitCommandError as exc:
            raise _classify(exc) from exc
        root = self.path / self.subdir if self.subdir else self.path
        if not root.is_dir():
            raise GitSourceError("ref", f"directory {self.subdir!r} does not exist at {current[:12]}")
        self._last = Snapshot(current, root, _blobs_from_listing(listing, self.subdir, root))
        return Snapshot(current, root, self._last.blobs, tuple(warnings))


def _blobs_from_listing(listing: str, subdir: str, root: Path) -> dict[str, str]:
    rules = IgnoreRules.read(root)
    blobs: dict[str, str] = {}
    prefix = f"{subdir}/" if subdir else ""
    for item in filter(None, listing.split("\0")):
        meta, _, path = item.partition("\t")
        mode, kind, sha = meta.split()
        if kind != "blob" or mode not in ("100644", "100755"):
            continue  # symlinks could point out of the bundle; submodules are not ours to read
        fileloc = path[len(prefix):] if prefix and path.startswith(prefix) else path
        if is_candidate(fileloc, rules):
            blobs[fileloc] = sha
    return blobs


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with this content, so directory and git bundles diff the same way."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class DirectorySource:
    """A plain directory (no git): always "fetched"; no commit, blob ids computed from content."""

    def __init__(self, name: str, path: Path | str) -> None:
        self.name = name
        self.path = Path(path)

    def refresh(self, fetch: bool = True) -> Snapshot:
        if not self.path.is_dir():
            raise GitSourceError("repository", f"DAG directory {self.path} does not exist")
        rules = IgnoreRules.read(self.path)
        blobs: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            rel_dir = Path(dirpath).relative_to(self.path).as_posix()
            for name in filenames:
                fileloc = name if rel_dir == "." else f"{rel_dir}/{name}"
                if is_candidate(fileloc, rules):
                    try:
                        blobs[fileloc] = git_blob_id((self.path / fileloc).read_bytes())
                    except OSError:
                        continue
        return Snapshot(None, self.path, blobs)


BundleSource = GitSource | DirectorySource


def open_source(name: str, location: str, ref: str, cache_dir: Path, subdir: str = "",
                timeout: float = 120.0) -> BundleSource:
    """A git source for URLs and local git repositories; a directory source for other directories."""
    local = Path(location).expanduser()
    if "://" in location or location.startswith("git@"):
        return GitSource(name, location, ref, cache_dir, subdir, timeout)
    if local.is_dir():
        try:
            top = git.Repo(local, search_parent_directories=True).working_tree_dir
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            top = None
        if top is None:
            return DirectorySource(name, local / subdir if subdir else local)
        rel = local.resolve().relative_to(Path(top).resolve()).as_posix()
        inner = "/".join(p for p in (rel if rel != "." else "", subdir.strip("/")) if p)
        return GitSource(name, str(Path(top).resolve()), ref, cache_dir, inner, timeout)
    return GitSource(name, location, ref, cache_dir, subdir, timeout)
