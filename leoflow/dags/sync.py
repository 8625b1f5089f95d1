"""Keep the store's DAGs in step with a bundle: fetch, re-parse changed files, record versions.

``DagSync.sync_once(now)`` is one pass; ``DagSync.run(stop, wake)`` loops: on the fetch interval,
when ``wake`` is set (the server's git webhook in the same process) or when a "fetch now" request
appears in the store (the webhook of another process, see ``DagRepository.request_fetch``).

Rules it keeps (issue 2):
* only files whose git blob id changed since the last processed commit are parsed again (all
  Python DAG files when a non-DAG ``.py`` helper changed, since they may import it);
* a DAG gets a new version exactly when its serialized form changes;
* a broken file becomes an import error and its DAGs keep their last good version; the error is
  cleared when the file is fixed or deleted; a broken file never hides other DAGs;
* a DAG whose file is gone (and that no other file defines) becomes stale, its history kept;
* a DAG deleted (API) while its file is unchanged is recorded again, as a new DAG, on the next pass;
* a git failure is reported and recorded on the bundle; nothing stored changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from leoflow.config import Config
from leoflow.dags import metrics
from leoflow.dags.errors import DagFileError, stack_trace
from leoflow.dags.gitsource import BundleSource, DirectorySource, GitSourceError, Snapshot, open_source
from leoflow.dags.loader import PY_SUFFIX, ParsedFile, PythonLimits, is_python_dag_source, load_file, read_source
from leoflow.domain.records import DagVersion
from leoflow.store.port import Op, StoreError, ValueTooLarge
from leoflow.store.repos.dags import BundleState, DagEntry, DagRepository, FileRecord

log = logging.getLogger("leoflow.dags.sync")


@dataclass
class SyncReport:
    bundle_name: str
    bundle_version: str | None = None
    previous_version: str | None = None
    files_total: int = 0
    files_parsed: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    new_versions: list[DagVersion] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    errors: list[DagFileError] = field(default_factory=list)
    cleared_errors: list[str] = field(default_factory=list)
    git_error: str | None = None
    git_error_kind: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.git_error is None

    def summary(self) -> str:
        if self.git_error:
            return f"bundle {self.bundle_name}: {self.git_error} (last good DAG versions stay in force)"
        return (f"bundle {self.bundle_name} at {(self.bundle_version or 'working tree')[:12]}: "
                f"{len(self.files_parsed)} file(s) parsed, {len(self.new_versions)} new version(s), "
                f"{len(self.stale)} stale, {len(self.errors)} import error(s), {self.seconds * 1000:.0f} ms")


class DagSync:
    def __init__(self, repo: DagRepository, source: BundleSource, limits: PythonLimits | None = None) -> None:
        self.repo = repo
        self.source = source
        self.name = source.name
        self.limits = limits or PythonLimits()
        self._lock = threading.Lock()  # one pass at a time per process (webhook + loop)

    # ---- one pass ---------------------------------------------------------------------------
    def sync_once(self, now: datetime, *, fetch: bool = True) -> SyncReport:
        with self._lock:
            started = time.perf_counter()
            report = SyncReport(self.name)
            with metrics.SYNC_SECONDS.labels(self.name).time():
                self._sync(now, fetch, report)
            report.seconds = time.perf_counter() - started
            metrics.SYNCS.labels(self.name, "ok" if report.ok else "git_error").inc()
            (log.info if report.ok and not report.warnings else log.warning)(
                report.summary(), extra={"bundle": self.name, "warnings": report.warnings})
            return report

    def _sync(self, now: datetime, fetch: bool, report: SyncReport) -> None:
        bundle = self.repo.bundle(self.name) or BundleState(self.name)
        report.previous_version = bundle.version
        try:
            snapshot = self.source.refresh(fetch)
        except GitSourceError as exc:
            report.git_error, report.git_error_kind = str(exc), exc.kind
            report.bundle_version = bundle.version
            self.repo.save_bundle(BundleState(self.name, bundle.version, bundle.last_sync_at, str(exc), now,
                                              bundle.warnings))
            return
        report.bundle_version = snapshot.version
        report.warnings.extend(snapshot.warnings)
        report.files_total = len(snapshot.blobs)
        self._apply(snapshot, now, report)
        self.repo.save_bundle(BundleState(self.name, snapshot.version, now, None, None, tuple(report.warnings)))

    def _to_parse(self, snapshot: Snapshot, files: dict[str, FileRecord],
                  known: Collection[str] | None = None) -> tuple[list[str], list[str]]:
        changed = sorted(f for f, blob in snapshot.blobs.items() if f not in files or files[f].blob != blob)
        deleted = sorted(f for f in files if f not in snapshot.blobs)
        helpers_changed = any(
            f.endswith(PY_SUFFIX) and (f in deleted or not is_python_dag_source(self._text(snapshot, f)))
            and (f not in files or not files[f].dag_ids)
            for f in (*changed, *deleted)
        )
        again: set[str] = set()
        if helpers_changed:  # a DAG file may import the helper: evaluate every Python DAG file again
            again |= {f for f, r in files.items() if f.endswith(PY_SUFFIX) and (r.dag_ids or r.failed)}
        released = {dag_id for f in (*changed, *deleted) if f in files for dag_id in files[f].dag_ids}
        again |= {f for f, r in files.items() if set(r.duplicates) & released}  # may own those ids now
        # A DAG deleted through the API while its file stayed comes back as a new DAG (ADR 0014). A
        # failed file keeps its ids without a parse; it is parsed again when it changes.
        if known is not None:
            again |= {f for f, r in files.items()
                      if not r.failed and f in snapshot.blobs and any(d not in known for d in r.dag_ids)}
        return sorted((set(changed) | again) - set(deleted)), deleted

    @staticmethod
    def _text(snapshot: Snapshot, fileloc: str) -> str:
        text, _ = read_source(snapshot.root / fileloc, fileloc)
        return text or ""

    def _parse(self, snapshot: Snapshot, fileloc: str) -> ParsedFile | None:
        """Parse one file; None for a Python file that is not a DAG file (a helper module)."""
        if fileloc.endswith(PY_SUFFIX):
            text, _ = read_source(snapshot.root / fileloc, fileloc)
            if text is not None and not is_python_dag_source(text):
                return None
        return load_file(snapshot.root, fileloc, self.limits)

    def _apply(self, snapshot: Snapshot, now: datetime, report: SyncReport) -> None:
        files = self.repo.files(self.name)
        entries: dict[str, DagEntry] = {e.state.dag_id: e for e in self.repo.list()}
        errored = {e.filename for e in self.repo.import_errors(self.name)}
        changed, deleted = self._to_parse(snapshot, files, entries)
        touched = set(changed) | set(deleted)
        owner = {dag_id: f for f, r in files.items() if f not in touched for dag_id in r.dag_ids}
        ops: list[Op] = []
        versions_before = len(report.new_versions)

        for fileloc in changed:
            parsed = self._parse(snapshot, fileloc)
            report.files_parsed.append(fileloc)
            blob = snapshot.blobs[fileloc]
            if parsed is None:
                ops += self.repo.file_ops(self.name, FileRecord(fileloc, blob))
                continue
            dupes: list[DagFileError] = []
            lost: tuple[str, ...] = ()
            if parsed.ok:
                dupes = [DagFileError(fileloc, 1, 1, f"dag_id '{d.dag_id}' is already defined in {owner[d.dag_id]}")
                         for d in parsed.dags if owner.get(d.dag_id, fileloc) != fileloc]
                if dupes:
                    lost = tuple(d.dag_id for d in parsed.dags if owner.get(d.dag_id, fileloc) != fileloc)
                    parsed = ParsedFile(fileloc, parsed.source, errors=tuple(dupes))
            if not parsed.ok:
                report.errors.extend(parsed.errors)
                ops += self.repo.import_error_ops(self.name, fileloc, stack_trace(list(parsed.errors)), now)
                kept = tuple(i for i in (files[fileloc].dag_ids if fileloc in files else ())
                             if owner.get(i, fileloc) == fileloc)
                for dag_id in kept:
                    owner[dag_id] = fileloc
                ops += self.repo.file_ops(self.name, FileRecord(fileloc, blob, kept, failed=True, duplicates=lost))
                continue
            too_large: list[DagFileError] = []
            for dag in parsed.dags:
                owner[dag.dag_id] = fileloc
                try:
                    version = self.repo.record_version(
                        dag, parsed.source, bundle_name=self.name, bundle_version=snapshot.version, now=now,
                        current=entries.get(dag.dag_id), known=True)
                except ValueTooLarge as exc:  # stored nothing for this DAG; its last version stays
                    too_large.append(DagFileError(fileloc, 1, 1, str(exc)))
                    continue
                if version is not None:
                    report.new_versions.append(version)
            if too_large:
                report.errors.extend(too_large)
                ops += self.repo.import_error_ops(self.name, fileloc, stack_trace(too_large), now)
                ops += self.repo.file_ops(self.name, FileRecord(fileloc, blob, tuple(d.dag_id for d in parsed.dags),
                                                                failed=True))
                continue
            if fileloc in errored:
                ops += self.repo.clear_import_error_ops(self.name, fileloc)
                report.cleared_errors.append(fileloc)
            ops += self.repo.file_ops(self.name, FileRecord(fileloc, blob, tuple(d.dag_id for d in parsed.dags)))

        for fileloc in deleted:
            report.files_deleted.append(fileloc)
            ops += self.repo.delete_file_ops(self.name, fileloc)
            if fileloc in errored:
                ops += self.repo.clear_import_error_ops(self.name, fileloc)
                report.cleared_errors.append(fileloc)

        gone = {dag_id for f in touched if f in files for dag_id in files[f].dag_ids} - set(owner)
        report.stale = self.repo.mark_stale(sorted(gone), now)
        self.repo.apply(ops, what=f"bundle {self.name} file records")

        metrics.FILES_PARSED.labels(self.name).inc(len(report.files_parsed))
        metrics.VERSIONS.labels(self.name).inc(len(report.new_versions) - versions_before)
        failing = (errored - set(report.cleared_errors) - set(deleted)) | {e.filename for e in report.errors}
        metrics.IMPORT_ERRORS.labels(self.name).set(len(failing))

    # ---- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event, wake: threading.Event | None = None, *, interval: float = 30.0,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC), request_poll: float = 2.0,
            on_report: Callable[[SyncReport], None] | None = None) -> None:
        """Sync every ``interval`` seconds, at once when ``wake`` is set or a fetch is requested in
        the store, until ``stop`` is set. Failures are logged and retried on the next round."""
        wake = wake or threading.Event()
        next_sync = 0.0
        next_poll = 0.0
        last_request = self._request_index()
        while not stop.is_set():
            now = time.monotonic()
            requested = False
            if now >= next_poll:
                next_poll = now + request_poll
                index = self._request_index()
                requested, last_request = index != last_request, index
            if requested or wake.is_set() or now >= next_sync:
                wake.clear()
                try:
                    report = self.sync_once(clock())
                    if on_report is not None:
                        on_report(report)
                except (StoreError, OSError) as exc:
                    log.error("DAG sync failed; retrying on the next round", extra={"bundle": self.name,
                                                                                   "error": str(exc)})
                next_sync = time.monotonic() + interval
            wake.wait(min(0.2, max(0.0, min(next_sync, next_poll) - time.monotonic())))

    def _request_index(self) -> int:
        try:
            return self.repo.fetch_request_index(self.name)
        except StoreError:
            return 0


def default_dags_location() -> Path:
    """The example repository (``jobs/``) next to the package: what ``leoflow standalone`` loads."""
    return Path(__file__).resolve().parents[2] / "jobs"


def sync_from_config(config: Config, repo: DagRepository) -> DagSync:
    """The composition roots' one call: a DagSync for ``[dags]`` of the configuration."""
    dags = config.dags
    cache = Path(dags.cache_dir) if dags.cache_dir else config.home_path / "bundles"
    source: BundleSource
    if dags.repo:
        source = open_source(dags.bundle_name, dags.repo, dags.ref, cache, dags.subdir, timeout=dags.git_timeout)
    else:  # the bundled examples are read as a plain directory: they are not the user's git history
        source = DirectorySource(dags.bundle_name, default_dags_location())
    return DagSync(repo, source, PythonLimits(dags.python_parse_timeout, dags.python_parse_memory_mb))
