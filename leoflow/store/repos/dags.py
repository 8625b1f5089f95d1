"""DAG state and versions in the store: what the git sync writes and the API and scheduler read.

Key layout (all under ``<root>/dags/``; ids pass through ``keys.encode_id``)::

    dags/state/<dag>                one value per DAG: DagState + its latest DagVersion + a summary
    dags/versions/<dag>/<n:09d>     one DagVersion per version (+ the hash of its source)
    dags/blobs/<sha256>/<i:04d>     content-addressed, zlib-compressed, chunked blobs: serialized
                                    DAGs (hash = the DAG's content hash) and source texts
    dags/errors/<bundle>/<file>     the import error of one file (absent when the file is fine)
    dags/files/<bundle>/<file>      what the last parse of a file gave: git blob id, dag ids
    dags/bundles/<bundle>           the bundle's sync state: last processed commit, last git error
    dags/fetch/<bundle>             "fetch now" requests (the git webhook writes it)

Read costs: every DAG with its latest version is ONE prefix list (``list``); a version is one get;
a serialized DAG or a source is one get plus one prefix list (its chunks). Values stay below
Consul's 512 KiB limit: blobs are split into 256 KiB chunks; a blob over ``MAX_BLOB_BYTES``
(compressed) is refused with ``ValueTooLarge`` naming the DAG, and nothing is written.

Why content addressing: a revert makes a new version whose content equals an old one, and then
shares its blobs; several DAGs of one Python file share one source blob.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from leoflow.domain.dag import DAG
from leoflow.domain.records import DagImportError, DagState, DagVersion
from leoflow.domain.serialize import canonical_json, dag_from_dict, dag_to_dict
from leoflow.store import keys
from leoflow.store.fence import Fence
from leoflow.store.port import MAX_TXN_BYTES, MAX_TXN_OPS, Cas, CheckNotExists, Delete, Op, Set, Store, ValueTooLarge
from leoflow.store.repos import codec
from leoflow.store.repos.errors import Conflict, CorruptRecord, NotFound

CHUNK_BYTES = 256 * 1024
MAX_BLOB_BYTES = 8 * 1024 * 1024
MAX_STACK_TRACE = 64 * 1024
_TXN_BUDGET = MAX_TXN_BYTES - 16 * 1024  # room for keys and the JSON framing
_CAS_RETRIES = 20
_ENC = keys.encode_id


@dataclass(frozen=True)
class DagSummary:
    """What a DAG listing shows without loading the serialized DAG (taken from the latest version)."""

    description: str | None = None
    schedule: str | None = None
    timezone: str = "UTC"
    tags: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    fileloc: str = ""
    max_active_runs: int = 16
    max_active_tasks: int = 16
    catchup: bool = False
    start_date: datetime | None = None
    end_date: datetime | None = None
    dagrun_timeout_seconds: float | None = None
    task_count: int = 0
    has_task_concurrency_limits: bool = False

    @classmethod
    def of(cls, dag: DAG) -> DagSummary:
        owners = sorted({t.owner for t in dag.tasks.values()} or {dag.owner})
        timeout = dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout is not None else None
        return cls(
            description=dag.description, schedule=dag.schedule, timezone=dag.timezone, tags=tuple(dag.tags),
            owners=tuple(owners), fileloc=dag.fileloc, max_active_runs=dag.max_active_runs,
            max_active_tasks=dag.max_active_tasks, catchup=dag.catchup, start_date=dag.start_date,
            end_date=dag.end_date, dagrun_timeout_seconds=timeout, task_count=len(dag.tasks),
            has_task_concurrency_limits=any(t.pool_slots != 1 for t in dag.tasks.values()),
        )


@dataclass(frozen=True)
class DagEntry:
    """One DAG as listed: its state, its latest version and summary, and the CAS index of the entry."""

    state: DagState
    latest: DagVersion | None
    summary: DagSummary | None
    index: int = 0


@dataclass(frozen=True)
class FileRecord:
    """What the last parse of one file of a bundle gave; the sync diffs blob ids to find changes."""

    fileloc: str
    blob: str  # git blob id (or content hash) of the file that was parsed
    dag_ids: tuple[str, ...] = ()
    failed: bool = False  # the last parse failed; dag_ids are then the ones still in force
    duplicates: tuple[str, ...] = ()  # dag ids it lost to another file: parse again when that file changes


@dataclass(frozen=True)
class BundleState:
    name: str
    version: str | None = None  # the last commit processed completely
    last_sync_at: datetime | None = None
    last_error: str | None = None  # the last git failure (None once a fetch succeeds again)
    last_error_at: datetime | None = None
    warnings: tuple[str, ...] = field(default=())


def _blob_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DagRepository:
    def __init__(self, store: Store, root: str = "leoflow") -> None:
        keys.validate_key(root)
        self.store = store
        self.root = root

    # ---- keys -----------------------------------------------------------------------------
    def _key(self, *segments: str) -> str:
        return keys.join(self.root, "dags", *segments)

    def _prefix(self, *segments: str) -> str:
        return keys.prefix_of(self.root, "dags", *segments)

    def state_key(self, dag_id: str) -> str:
        return self._key("state", _ENC(dag_id))

    def version_key(self, dag_id: str, number: int) -> str:
        return self._key("versions", _ENC(dag_id), f"{number:09d}")

    def _blob_prefix(self, digest: str) -> str:
        return self._prefix("blobs", digest)

    def _error_key(self, bundle: str, filename: str) -> str:
        return self._key("errors", _ENC(bundle), _ENC(filename))

    def _file_key(self, bundle: str, fileloc: str) -> str:
        return self._key("files", _ENC(bundle), _ENC(fileloc))

    def _bundle_key(self, bundle: str) -> str:
        return self._key("bundles", _ENC(bundle))

    def fetch_request_key(self, bundle: str) -> str:
        return self._key("fetch", _ENC(bundle))

    # ---- entries ----------------------------------------------------------------------------
    def _decode_entry(self, key: str, value: bytes, index: int) -> DagEntry:
        data = codec.load(key, value)
        try:
            state = codec.from_dict(DagState, data["state"])
            latest = codec.from_dict(DagVersion, data["latest"]) if data.get("latest") else None
            summary = codec.from_dict(DagSummary, data["summary"]) if data.get("summary") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord(f"value of key {key!r} is not a DAG entry: {exc}") from exc
        return DagEntry(state, latest, summary, index)

    @staticmethod
    def _encode_entry(entry: DagEntry) -> bytes:
        return codec.encode_json({
            "state": codec.to_dict(entry.state),
            "latest": codec.to_dict(entry.latest) if entry.latest else None,
            "summary": codec.to_dict(entry.summary) if entry.summary else None,
        })

    def list(self) -> list[DagEntry]:
        """Every DAG with its latest version and summary: one prefix list."""
        return [self._decode_entry(e.key, e.value, e.modify_index) for e in self.store.list(self._prefix("state"))]

    def get(self, dag_id: str) -> DagEntry | None:
        entry = self.store.get(self.state_key(dag_id))
        return self._decode_entry(entry.key, entry.value, entry.modify_index) if entry else None

    def versions(self, dag_id: str) -> list[DagVersion]:
        """All versions of a DAG, oldest first: one prefix list."""
        return [codec.decode(DagVersion, e.key, e.value)
                for e in self.store.list(self._prefix("versions", _ENC(dag_id)))]

    def version(self, dag_id: str, number: int | None = None) -> DagVersion | None:
        """A version (the latest when ``number`` is None)."""
        if number is None:
            entry = self.get(dag_id)
            return entry.latest if entry else None
        stored = self.store.get(self.version_key(dag_id, number))
        return codec.decode(DagVersion, stored.key, stored.value) if stored else None

    def _source_hash(self, dag_id: str, number: int) -> str | None:
        stored = self.store.get(self.version_key(dag_id, number))
        if stored is None:
            return None
        return codec.load(stored.key, stored.value).get("source_hash")

    def dag(self, dag_id: str, number: int | None = None) -> DAG | None:
        """The DAG as it was at a version (the latest when ``number`` is None)."""
        version = self.version(dag_id, number)
        if version is None:
            return None
        blob = self._read_blob(version.content_hash)
        if blob is None:
            raise CorruptRecord(f"serialized DAG {dag_id!r} version {version.version_number} is missing")
        return dag_from_dict(json.loads(blob))

    def source(self, dag_id: str, number: int | None = None) -> str | None:
        """The source text of the file a version was parsed from (the UI's Code tab)."""
        if number is None:
            entry = self.get(dag_id)
            if entry is None or entry.latest is None:
                return None
            number = entry.latest.version_number
        digest = self._source_hash(dag_id, number)
        if digest is None:
            return None
        blob = self._read_blob(digest)
        return blob.decode("utf-8") if blob is not None else None

    # ---- blobs ------------------------------------------------------------------------------
    def _blob_ops(self, digest: str, data: bytes, what: str) -> list[Set]:
        packed = zlib.compress(data, 6)
        if len(packed) > MAX_BLOB_BYTES:
            raise ValueTooLarge(f"{what} is {len(packed)} bytes compressed, over the {MAX_BLOB_BYTES} byte limit")
        prefix = self._blob_prefix(digest)
        return [Set(f"{prefix}{i:04d}", packed[off:off + CHUNK_BYTES])
                for i, off in enumerate(range(0, max(len(packed), 1), CHUNK_BYTES))]

    def _read_blob(self, digest: str) -> bytes | None:
        chunks = self.store.list(self._blob_prefix(digest))
        if not chunks:
            return None
        try:
            data = zlib.decompress(b"".join(c.value for c in chunks))
        except zlib.error as exc:
            raise CorruptRecord(f"blob {digest} is damaged: {exc}") from exc
        if _blob_hash(data) != digest:
            raise CorruptRecord(f"blob {digest} does not match its hash (incomplete write?)")
        return data

    def _write_ops(self, ops: Sequence[Op], *, what: str) -> None:
        """Write independent ops in as few transactions as the op and byte limits allow."""
        batch: list[Op] = []
        size = 0
        for op in ops:
            op_size = len(getattr(op, "key", "")) + len(getattr(op, "value", b""))
            if batch and (len(batch) >= MAX_TXN_OPS or size + op_size > _TXN_BUDGET):
                self._commit(batch, what)
                batch, size = [], 0
            batch.append(op)
            size += op_size
        if batch:
            self._commit(batch, what)

    def _commit(self, ops: list[Op], what: str) -> None:
        result = self.store.txn(ops)
        if not result.ok:
            raise Conflict(f"{what}: transaction rejected: " + "; ".join(e.what for e in result.errors))

    # ---- versions -----------------------------------------------------------------------------
    def record_version(self, dag: DAG, source: str, *, bundle_name: str, bundle_version: str | None,
                       now: datetime, current: DagEntry | None = None, known: bool = False) -> DagVersion | None:
        """Store ``dag`` as parsed now; a new version is made exactly when its serialized form changed.

        Returns the new version, or None when the content equals the latest version (then only the
        DAG's parse time and stale flag are refreshed). ``current`` is the entry as the caller last
        listed it (``known=True`` says "it was listed and did not exist" when it is None); on a
        lost compare-and-set the entry is read again.
        """
        data = dag_to_dict(dag)
        serialized = canonical_json(data)
        digest = _blob_hash(serialized)
        source_bytes = source.encode("utf-8")
        source_digest = _blob_hash(source_bytes)
        blob_ops: list[Set] | None = None
        for _ in range(_CAS_RETRIES):
            if current is None and not known:
                current = self.get(dag.dag_id)
            known = False
            latest = current.latest if current else None
            if current is not None and latest is not None and latest.content_hash == digest:
                state = replace(current.state, is_stale=False, last_parsed_time=now, bundle_name=bundle_name)
                if self._cas_entry(replace(current, state=state), current.index):
                    return None
                current = None
                continue
            number = (latest.version_number if latest else 0) + 1
            version = DagVersion(dag_id=dag.dag_id, version_number=number, bundle_name=bundle_name,
                                 bundle_version=bundle_version, created_at=now, content_hash=digest,
                                 fileloc=dag.fileloc)
            state = (replace(current.state, latest_version=number, is_stale=False, bundle_name=bundle_name,
                             last_parsed_time=now) if current is not None else
                     DagState(dag_id=dag.dag_id, is_paused=dag.is_paused_upon_creation, latest_version=number,
                              bundle_name=bundle_name, last_parsed_time=now))
            entry = DagEntry(state, version, DagSummary.of(dag))
            if blob_ops is None:
                blob_ops = (self._blob_ops(digest, serialized, f"serialized DAG '{dag.dag_id}'")
                            + self._blob_ops(source_digest, source_bytes, f"source of DAG '{dag.dag_id}'"))
            ops: list[Op] = [
                Cas(self.state_key(dag.dag_id), self._encode_entry(entry), current.index if current else 0),
                CheckNotExists(self.version_key(dag.dag_id, number)),
                Set(self.version_key(dag.dag_id, number), codec.encode(version, source_hash=source_digest)),
            ]
            blob_size = sum(len(op.key) + len(op.value) for op in blob_ops)
            if blob_size + sum(len(getattr(o, "value", b"")) for o in ops) <= _TXN_BUDGET \
                    and len(blob_ops) + len(ops) <= MAX_TXN_OPS:
                ops = [*blob_ops, *ops]
            else:  # big: blobs first (immutable, unreferenced until the version lands), then the version
                self._write_ops(blob_ops, what=f"blobs of DAG '{dag.dag_id}'")
            if self.store.txn(ops).ok:
                return version
            current = None
        raise Conflict(f"DAG '{dag.dag_id}': could not record a version after {_CAS_RETRIES} attempts")

    def _cas_entry(self, entry: DagEntry, index: int, fence: Fence | None = None) -> bool:
        op = Cas(self.state_key(entry.state.dag_id), self._encode_entry(entry), index)
        result = fence.txn(self.store, [op]) if fence is not None else self.store.txn([op])
        return result.ok

    def update_state(self, dag_id: str, change: Callable[[DagState], DagState], *,
                     fence: Fence | None = None) -> DagState:
        """Apply ``change`` to a DAG's state by compare-and-set, re-reading on conflict."""
        for _ in range(_CAS_RETRIES):
            entry = self.get(dag_id)
            if entry is None:
                raise NotFound(f"DAG '{dag_id}' not found")
            state = change(entry.state)
            if state.dag_id != dag_id:
                raise ValueError("a state change must not change the dag_id")
            if self._cas_entry(replace(entry, state=state), entry.index, fence):
                return state
        raise Conflict(f"DAG '{dag_id}': state update lost {_CAS_RETRIES} compare-and-sets in a row")

    def set_paused(self, dag_id: str, paused: bool) -> DagState:
        return self.update_state(dag_id, lambda s: replace(s, is_paused=paused))

    def set_next_dagrun(self, dag_id: str, *, logical_date: datetime | None, data_interval_start: datetime | None,
                        data_interval_end: datetime | None, run_after: datetime | None,
                        fence: Fence | None = None) -> DagState:
        return self.update_state(dag_id, lambda s: replace(
            s, next_dagrun_logical_date=logical_date, next_dagrun_data_interval_start=data_interval_start,
            next_dagrun_data_interval_end=data_interval_end, next_dagrun_run_after=run_after), fence=fence)

    def mark_stale(self, dag_ids: Sequence[str], now: datetime) -> list[str]:
        """Mark DAGs whose file is gone as stale (their history stays); returns those changed."""
        changed = []
        for dag_id in dag_ids:
            entry = self.get(dag_id)
            if entry is None or entry.state.is_stale:
                continue
            self.update_state(dag_id, lambda s: replace(s, is_stale=True, last_parsed_time=now))
            changed.append(dag_id)
        return changed

    # ---- import errors ------------------------------------------------------------------------
    def _decode_error(self, key: str, value: bytes, create_index: int) -> DagImportError:
        data = codec.load(key, value)
        try:
            return DagImportError(import_error_id=create_index, filename=data["filename"],
                                  bundle_name=data["bundle_name"], stack_trace=data["stack_trace"],
                                  timestamp=datetime.fromisoformat(data["timestamp"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord(f"value of key {key!r} is not an import error: {exc}") from exc

    def import_errors(self, bundle: str | None = None) -> list[DagImportError]:
        """Every current import error (one prefix list); ids are stable while the file stays broken."""
        prefix = self._prefix("errors", _ENC(bundle)) if bundle else self._prefix("errors")
        errors = [self._decode_error(e.key, e.value, e.create_index) for e in self.store.list(prefix)]
        return sorted(errors, key=lambda e: e.import_error_id)

    def import_error(self, import_error_id: int) -> DagImportError | None:
        return next((e for e in self.import_errors() if e.import_error_id == import_error_id), None)

    def import_error_ops(self, bundle: str, filename: str, stack_trace: str, now: datetime) -> list[Op]:
        if len(stack_trace) > MAX_STACK_TRACE:
            stack_trace = stack_trace[:MAX_STACK_TRACE] + "\n... (truncated)"
        value = codec.encode_json({"filename": filename, "bundle_name": bundle, "stack_trace": stack_trace,
                                   "timestamp": now.isoformat()})
        return [Set(self._error_key(bundle, filename), value)]

    def clear_import_error_ops(self, bundle: str, filename: str) -> list[Op]:
        return [Delete(self._error_key(bundle, filename))]

    # ---- bundle bookkeeping -----------------------------------------------------------------
    def files(self, bundle: str) -> dict[str, FileRecord]:
        out = {}
        for e in self.store.list(self._prefix("files", _ENC(bundle))):
            record = codec.decode(FileRecord, e.key, e.value)
            out[record.fileloc] = record
        return out

    def file_ops(self, bundle: str, record: FileRecord) -> list[Op]:
        return [Set(self._file_key(bundle, record.fileloc), codec.encode(record))]

    def delete_file_ops(self, bundle: str, fileloc: str) -> list[Op]:
        return [Delete(self._file_key(bundle, fileloc))]

    def apply(self, ops: Sequence[Op], *, what: str) -> None:
        """Write bookkeeping ops (file records, import errors) in batches; each op is independent."""
        self._write_ops(ops, what=what)

    def bundle(self, name: str) -> BundleState | None:
        stored = self.store.get(self._bundle_key(name))
        return codec.decode(BundleState, stored.key, stored.value) if stored else None

    def save_bundle(self, state: BundleState) -> None:
        self.store.put(self._bundle_key(state.name), codec.encode(state))

    def request_fetch(self, bundle: str, now: datetime) -> None:
        """Ask whichever process syncs ``bundle`` to fetch now (the git webhook calls this)."""
        self.store.put(self.fetch_request_key(bundle), codec.encode_json({"requested_at": now.isoformat()}))

    def fetch_request_index(self, bundle: str) -> int:
        entry = self.store.get(self.fetch_request_key(bundle))
        return entry.modify_index if entry else 0

