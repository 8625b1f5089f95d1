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

In the API server (``projection=True``) the DAG entries and import errors are mirrored in memory
(``mirror.PrefixMirror``, fed by blocking queries, with read-your-writes for this
repository's own writes), so ``list()`` and ``import_errors()`` cost no store request and no
decoding. Parsed DAGs are cached by content hash in every process (immutable, LRU-bounded).
``get()`` always reads the store: compare-and-set callers need the current index.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from leoflow.domain.dag import DAG
from leoflow.domain.records import DagImportError, DagState, DagVersion
from leoflow.domain.serialize import canonical_json, dag_from_dict, dag_to_dict
from leoflow.store import keys
from leoflow.store.fence import Fence
from leoflow.store.port import (
    MAX_TXN_BYTES,
    MAX_TXN_OPS,
    Cas,
    CheckIndex,
    CheckNotExists,
    Delete,
    DeleteCas,
    Entry,
    Op,
    Set,
    Store,
    TxnResult,
    ValueTooLarge,
)
from leoflow.store.repos import codec
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.errors import Conflict, CorruptRecord, NotFound
from leoflow.store.repos.favorites import FavoriteRepository
from leoflow.store.repos.follower import PrefixFollower, stop_all
from leoflow.store.repos.mirror import PrefixMirror

CHUNK_BYTES = 256 * 1024
MAX_BLOB_BYTES = 8 * 1024 * 1024
MAX_STACK_TRACE = 64 * 1024
_TXN_BUDGET = MAX_TXN_BYTES - 16 * 1024  # room for keys and the JSON framing
_CAS_RETRIES = 20
_ENC = keys.encode_id
DAG_CACHE_SIZE = 512  # parsed DAGs kept per process (a 10-task DAG is a few KiB)


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
    def __init__(self, store: Store, root: str = "leoflow", *, projection: bool = False,
                 projection_wait: float = 0.5, favorites: FavoriteRepository | None = None) -> None:
        """``projection=True`` (long-lived readers: the API server) mirrors the DAG entries and
        import errors in memory, loaded now and followed by blocking queries; call ``close()``.
        ``favorites``: the repository whose stars ``delete`` forgets (its mirror must see that)."""
        keys.validate_key(root)
        self.store = store
        self.root = root
        self._favorites = favorites if favorites is not None else FavoriteRepository(store, Keyspace(root))
        self._dag_cache: OrderedDict[str, DAG] = OrderedDict()
        self._dag_cache_lock = threading.Lock()
        self._entries: PrefixMirror[DagEntry] | None = None
        self._errors: PrefixMirror[DagImportError] | None = None
        if projection:
            self._entries = PrefixMirror(store, self._prefix("state"), self._decode_stored_entry,
                                         name="dag-state", wait=projection_wait).start()
            try:
                self._errors = PrefixMirror(store, self._prefix("errors"), self._decode_stored_error,
                                            name="import-error", wait=projection_wait).start()
            except BaseException:
                self._entries.stop()
                raise

    def watchers(self) -> list[PrefixFollower]:
        """The mirrors' watch threads, to stop before the store closes (``Repositories.close``)."""
        return [m for m in (self._entries, self._errors) if m is not None]

    def close(self) -> None:
        """Stop the mirrors' watch threads (they leave the store within ``projection_wait``)."""
        stop_all(self.watchers())

    @property
    def projection_generation(self) -> int:
        """Changes whenever the mirrored DAG list changes (-1 without a projection)."""
        return self._entries.generation if self._entries is not None else -1

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

    def _decode_stored_entry(self, entry: Entry) -> DagEntry:
        return self._decode_entry(entry.key, entry.value, entry.modify_index)

    def _decode_stored_error(self, entry: Entry) -> DagImportError:
        return self._decode_error(entry.key, entry.value, entry.create_index)

    def _observe_txn(self, ops: Sequence[Op], result: TxnResult) -> None:
        """Read-your-writes: apply a successful txn's writes to mirrored keys at once."""
        if self._entries is None or not result.ok:
            return
        written = {e.key: e for e in result.results}
        for op in ops:
            key = getattr(op, "key", "")
            for mirror in (self._entries, self._errors):
                if mirror is None or not key.startswith(mirror.prefix):
                    continue
                if isinstance(op, Set | Cas) and key in written:
                    entry = written[key]
                    try:
                        mirror.observe(key, entry.modify_index, mirror.decode(entry))
                    except CorruptRecord:
                        continue  # the watch logs and skips it as well
                elif isinstance(op, Delete | DeleteCas):
                    mirror.observe(key, result.index, None)

    def _txn(self, ops: Sequence[Op], fence: Fence | None = None) -> TxnResult:
        result = fence.txn(self.store, ops) if fence is not None else self.store.txn(ops)
        self._observe_txn(ops, result)
        return result

    @staticmethod
    def _encode_entry(entry: DagEntry) -> bytes:
        return codec.encode_json({
            "state": codec.to_dict(entry.state),
            "latest": codec.to_dict(entry.latest) if entry.latest else None,
            "summary": codec.to_dict(entry.summary) if entry.summary else None,
        })

    def list(self) -> list[DagEntry]:
        """Every DAG with its latest version and summary, in key order: one prefix list (none
        with the projection: the mirrored entries, which include this process's own writes)."""
        if self._entries is not None:
            return list(self._entries.values())
        return [self._decode_entry(e.key, e.value, e.modify_index) for e in self.store.list(self._prefix("state"))]

    def get(self, dag_id: str) -> DagEntry | None:
        """One DAG's entry: from the mirror when there is one (no store request), else the store.
        Compare-and-set paths read the store instead (``_stored``): they must quote the current index."""
        if self._entries is not None:
            return self._entries.get(self.state_key(dag_id))
        return self._stored(dag_id)

    def _stored(self, dag_id: str) -> DagEntry | None:
        entry = self.store.get(self.state_key(dag_id))
        return self._decode_entry(entry.key, entry.value, entry.modify_index) if entry else None

    def versions(self, dag_id: str) -> list[DagVersion]:
        """All versions of a DAG, oldest first: one prefix list."""
        return [codec.decode(DagVersion, e.key, e.value)
                for e in self.store.list(self._prefix("versions", _ENC(dag_id)))]

    def version(self, dag_id: str, number: int | None = None) -> DagVersion | None:
        """A version (the latest when ``number`` is None)."""
        if number is None or self._entries is not None:
            entry = self.get(dag_id)
            if number is None or (entry is not None and entry.latest is not None
                                  and entry.latest.version_number == number):
                return entry.latest if entry else None  # most reads name the latest: no store request
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
        digest = version.content_hash
        with self._dag_cache_lock:
            cached = self._dag_cache.get(digest)
            if cached is not None:
                self._dag_cache.move_to_end(digest)
                return cached
        blob = self._read_blob(digest)
        if blob is None:
            raise CorruptRecord(f"serialized DAG {dag_id!r} version {version.version_number} is missing")
        dag = dag_from_dict(json.loads(blob))
        # The digest names the serialized content (dag_id included): the parsed DAG never changes.
        with self._dag_cache_lock:
            self._dag_cache[digest] = dag
            while len(self._dag_cache) > DAG_CACHE_SIZE:
                self._dag_cache.popitem(last=False)
        return dag

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

    def _write_ops(self, ops: Sequence[Op], *, what: str) -> dict[str, int]:
        """Write independent ops in as few transactions as the op and byte limits allow; returns
        the modify index of each key written."""
        batch: list[Op] = []
        size = 0
        written: dict[str, int] = {}
        for op in ops:
            op_size = len(getattr(op, "key", "")) + len(getattr(op, "value", b""))
            if batch and (len(batch) >= MAX_TXN_OPS or size + op_size > _TXN_BUDGET):
                written.update(self._commit(batch, what))
                batch, size = [], 0
            batch.append(op)
            size += op_size
        if batch:
            written.update(self._commit(batch, what))
        return written

    def _commit(self, ops: list[Op], what: str) -> dict[str, int]:
        result = self._txn(ops)
        if not result.ok:
            raise Conflict(f"{what}: transaction rejected: " + "; ".join(e.what for e in result.errors))
        return {e.key: e.modify_index for e in result.results}

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
                current = self._stored(dag.dag_id)
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
                written = self._write_ops(blob_ops, what=f"blobs of DAG '{dag.dag_id}'")
                # A delete of this DAG may remove blobs meanwhile (ADR 0014): the version lands only if
                # the first chunk of each blob is still the one just written (chunks go in one txn).
                ops += [CheckIndex(k, written[k]) for k in (blob_ops[0].key, self._blob_prefix(source_digest) + "0000")
                        if k in written]
            if self._txn(ops).ok:
                return version
            current = None
        raise Conflict(f"DAG '{dag.dag_id}': could not record a version after {_CAS_RETRIES} attempts")

    def _cas_entry(self, entry: DagEntry, index: int, fence: Fence | None = None) -> bool:
        op = Cas(self.state_key(entry.state.dag_id), self._encode_entry(entry), index)
        return self._txn([op], fence).ok

    def update_state(self, dag_id: str, change: Callable[[DagState], DagState], *,
                     fence: Fence | None = None) -> DagState:
        """Apply ``change`` to a DAG's state by compare-and-set, re-reading on conflict."""
        for _ in range(_CAS_RETRIES):
            entry = self._stored(dag_id)
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
            entry = self._stored(dag_id)
            if entry is None or entry.state.is_stale:
                continue
            self.update_state(dag_id, lambda s: replace(s, is_stale=True, last_parsed_time=now))
            changed.append(dag_id)
        return changed

    def delete(self, dag_id: str) -> bool:
        """Forget a DAG: its entry (state, latest version, summary with tags), every version, the
        blobs no other DAG version uses, and the users' favorites of it; False if it is unknown.

        The DAG's runs are the run repository's (the API deletes them first). Its file's record
        stays: the next sync sees a file defining a DAG without an entry and parses it again, so a
        DAG whose file still exists comes back as a new DAG (Airflow's semantics, ADR 0014).

        Order: the entry goes first, by compare-and-set, together with the versions that fit the
        same txn, so readers see the DAG vanish at once; the rest follows. Blobs are deleted only
        while the DAG is still absent (a sync re-creating it meanwhile keeps them, see
        ``record_version``). A crash midway leaves unreferenced keys only.
        """
        state_key = self.state_key(dag_id)
        versions_prefix = self._prefix("versions", _ENC(dag_id))
        for _ in range(_CAS_RETRIES):
            stored = self.store.get(state_key)
            if stored is None:
                return False
            versions = self.store.list(versions_prefix)
            first = [Delete(v.key) for v in versions[:MAX_TXN_OPS - 1]]
            if self._txn([DeleteCas(state_key, stored.modify_index), *first]).ok:
                break
        else:
            raise Conflict(f"DAG '{dag_id}': delete lost {_CAS_RETRIES} compare-and-sets in a row")
        self._write_ops([Delete(v.key) for v in versions[MAX_TXN_OPS - 1:]], what=f"versions of DAG '{dag_id}'")
        digests: set[str] = set()
        for v in versions:
            data = codec.load(v.key, v.value)
            digests.update(d for d in (data.get("content_hash"), data.get("source_hash")) if isinstance(d, str))
        if digests:
            for v in self.store.list(self._prefix("versions")):  # blobs other DAGs still use (a shared source)
                data = codec.load(v.key, v.value)
                digests.discard(data.get("content_hash"))
                digests.discard(data.get("source_hash"))
        for digest in sorted(digests):
            chunks = self.store.keys(self._blob_prefix(digest), separator=None)
            for i in range(0, len(chunks), MAX_TXN_OPS - 1):
                # No-op (not an error) if the DAG was recorded again meanwhile: its versions may use them.
                self.store.txn([CheckNotExists(state_key), *[Delete(k) for k in chunks[i:i + MAX_TXN_OPS - 1]]])
        self._favorites.forget_dag(dag_id)
        return True

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
        if self._errors is not None:
            errors = [e for e in self._errors.values() if not bundle or e.bundle_name == bundle]
        else:
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

