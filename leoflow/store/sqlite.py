"""The embedded store: one SQLite file with Consul KV semantics, shared by several processes.

Why emulate Consul instead of using SQL: the scheduler, repositories and UI code must not be able
to tell the backends apart, so one contract suite proves both (see adr/0020). How:

* **Index.** ``meta.idx`` plays Consul's raft index: every write transaction that changes
  something takes ``idx + 1`` for all its changes. ``meta.kv_idx`` is the KV table index (what a
  missing key or an empty listing reports). Deleted keys leave tombstones so a prefix's index never
  slides backwards when its newest entry is deleted; reaped tombstones raise ``meta.floor``.
* **Writers.** Each write is ``BEGIN IMMEDIATE`` (one writer at a time across processes, others
  wait on ``busy_timeout``), WAL mode so readers never block.
* **Watch across processes.** A blocking query re-reads the tiny ``meta`` row with short, growing
  sleeps (2 ms up to 25 ms) and re-runs the query only when the index moved; writers in the same
  process also wake watchers at once through a condition variable.
* **Sessions.** Wall-clock deadlines (``ttl x ttl_multiplier``, Consul's 2x) stored in the file, so
  any process observes an expiry: every operation first reaps expired sessions inside its own write
  transaction (releasing or deleting their locks and starting lock-delay), so a ``CheckSession``
  can never pass for a session whose deadline is behind it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leoflow.store import keys, limits
from leoflow.store.port import (
    Behavior,
    Cas,
    CheckIndex,
    CheckNotExists,
    CheckSession,
    Delete,
    DeleteCas,
    Entry,
    Get,
    Op,
    SessionInvalid,
    Set,
    StoreError,
    StoreUnavailable,
    TxnError,
    TxnResult,
    WatchResult,
)

MAX_LOCK_DELAY = 60.0
MAX_TTL = 86400.0
MAX_WAIT = 600.0
_SCHEMA_VERSION = 1
_KEY_END = "\x7f"  # every valid key character sorts below DEL, so [prefix, prefix+DEL) is the prefix range

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    idx INTEGER NOT NULL,
    kv_idx INTEGER NOT NULL,
    floor INTEGER NOT NULL,
    schema_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    flags INTEGER NOT NULL,
    create_index INTEGER NOT NULL,
    modify_index INTEGER NOT NULL,
    lock_index INTEGER NOT NULL,
    session TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_session ON kv (session) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS tombstones (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ttl REAL NOT NULL,
    behavior TEXT NOT NULL,
    lock_delay REAL NOT NULL,
    expires_at REAL NOT NULL,
    create_index INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS lock_delays (
    key TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID;
"""

_ENTRY_COLUMNS = "key, value, flags, create_index, modify_index, lock_index, session"


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        key=row[0], value=bytes(row[1]), flags=row[2], create_index=row[3], modify_index=row[4],
        lock_index=row[5], session=row[6],
    )


@dataclass
class _Write:
    """One write transaction in progress: every change in it gets index ``idx``."""

    conn: sqlite3.Connection
    idx: int
    now: float
    changed: bool = False
    kv_changed: bool = False
    reaped: bool = False  # changes made before the caller's ops (expired sessions)

    def get(self, key: str) -> Entry | None:
        row = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()  # noqa: S608
        return _entry(row) if row else None

    def store(self, new: Entry, old: Entry | None) -> Entry:
        """Write ``new`` unless it equals ``old`` (Consul keeps ModifyIndex on a no-op write)."""
        if old is not None and (old.value, old.flags, old.session, old.lock_index) == (
            new.value, new.flags, new.session, new.lock_index
        ):
            return old
        entry = Entry(
            key=new.key, value=new.value, flags=new.flags, lock_index=new.lock_index, session=new.session,
            create_index=old.create_index if old else self.idx, modify_index=self.idx,
        )
        self.conn.execute(
            "INSERT INTO kv (key, value, flags, create_index, modify_index, lock_index, session) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "flags = excluded.flags, modify_index = excluded.modify_index, lock_index = excluded.lock_index, "
            "session = excluded.session",
            (entry.key, entry.value, entry.flags, entry.create_index, entry.modify_index, entry.lock_index,
             entry.session),
        )
        if old is None:
            self.conn.execute("DELETE FROM tombstones WHERE key = ?", (entry.key,))
        self.changed = self.kv_changed = True
        return entry

    def delete(self, key: str) -> None:
        if self.conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount:
            self.conn.execute(
                "INSERT INTO tombstones (key, idx, at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET idx = excluded.idx, at = excluded.at",
                (key, self.idx, self.now),
            )
            self.changed = self.kv_changed = True

    def delete_tree(self, prefix: str) -> None:
        rows = self.conn.execute(
            "SELECT key FROM kv WHERE key >= ? AND key < ?", (prefix, prefix + _KEY_END)
        ).fetchall()
        for (key,) in rows:
            self.delete(key)

    def session_exists(self, session: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session,)).fetchone() is not None

    def lock_delayed(self, key: str) -> bool:
        row = self.conn.execute("SELECT until FROM lock_delays WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] > self.now

    def invalidate(self, session: str) -> None:
        """End a session: its locks are released or deleted, and lock-delay starts on each."""
        row = self.conn.execute("SELECT behavior, lock_delay FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            return
        behavior, lock_delay = row
        held = self.conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM kv WHERE session = ?", (session,)  # noqa: S608
        ).fetchall()
        for entry in map(_entry, held):
            if behavior == "delete":
                self.delete(entry.key)
            else:
                self.store(
                    Entry(entry.key, entry.value, 0, 0, entry.lock_index, entry.flags, None), entry
                )
            if lock_delay > 0:
                self.conn.execute(
                    "INSERT INTO lock_delays (key, until) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET until = excluded.until",
                    (entry.key, self.now + lock_delay),
                )
        self.conn.execute("DELETE FROM sessions WHERE id = ?", (session,))
        self.changed = True

    def reap_sessions(self) -> None:
        expired = self.conn.execute("SELECT id FROM sessions WHERE expires_at <= ?", (self.now,)).fetchall()
        for (session,) in expired:
            self.invalidate(session)


class SqliteStore:
    """``Store`` on one SQLite file. Thread-safe (a connection per thread) and multi-process safe.

    ``session_ttl_min`` and ``ttl_multiplier`` mirror Consul's agent settings (defaults 10 s and 2);
    tests lower the minimum to use sub-second TTLs. ``clock`` returns wall-clock seconds and must
    agree across every process sharing the file (only tests inject one).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        session_ttl_min: float = 10.0,
        ttl_multiplier: float = 2.0,
        busy_timeout: float = 30.0,
        tombstone_ttl: float = 3600.0,
        poll_min: float = 0.002,
        poll_max: float = 0.025,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._next_reap_check = float("-inf")
        self.session_ttl_min = session_ttl_min
        self.ttl_multiplier = ttl_multiplier
        self._busy_timeout = busy_timeout
        self._tombstone_ttl = tombstone_ttl
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._busy: dict[int, int] = {}
        self._conns_lock = threading.Lock()
        self._changed = threading.Condition()
        self._pid = os.getpid()
        self._closed = False
        self._writes = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._use() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT schema_version FROM meta WHERE id = 1").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (id, idx, kv_idx, floor, schema_version) VALUES (1, 0, 0, 0, ?)",
                             (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema version {row[0]}, this Leoflow expects {_SCHEMA_VERSION}")
            conn.execute("COMMIT")

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if os.getpid() != self._pid:  # forked (gunicorn workers): never reuse the parent's handles
            self._pid = os.getpid()
            self._local = threading.local()
            self._conns = []
            self._busy = {}
            self._conns_lock = threading.Lock()
            self._changed = threading.Condition()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA journal_size_limit = 8388608")  # truncate the WAL to 8 MiB after checkpoints
            conn.execute("PRAGMA foreign_keys = OFF")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, marked busy so ``close()`` never closes it under a running query."""
        conn = self._conn()
        with self._conns_lock:
            self._busy[id(conn)] = self._busy.get(id(conn), 0) + 1
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc
        finally:
            with self._conns_lock:
                self._busy[id(conn)] -= 1
                last_user_after_close = self._closed and self._busy[id(conn)] == 0
            if last_user_after_close:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def close(self) -> None:
        """Refuse new calls, wake blocked watchers (they raise StoreError), close idle connections;
        a connection still running a query is closed by its thread when the query ends."""
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
            idle = [c for c in conns if self._busy.get(id(c), 0) == 0]
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                conn.close()
        with self._changed:
            self._changed.notify_all()

    # -- writes ------------------------------------------------------------------------------

    def _write(self, fn: Callable[[_Write], Any], *, keep: Callable[[Any], bool] = lambda _: True) -> Any:
        """Run ``fn`` in one write transaction after reaping expired sessions.

        ``keep(result)`` False rolls back ``fn``'s changes (a failed txn) but still commits the reaping.
        """
        with self._use() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                idx, kv_idx = conn.execute("SELECT idx, kv_idx FROM meta WHERE id = 1").fetchone()
                w = _Write(conn, idx + 1, self._clock())
                w.reap_sessions()
                self._maybe_reap_tombstones(w)
                reaped = w.reaped = w.changed
                reaped_kv = w.kv_changed
                conn.execute("SAVEPOINT ops")
                result = fn(w)
                if keep(result):
                    conn.execute("RELEASE ops")
                else:
                    conn.execute("ROLLBACK TO ops")
                    conn.execute("RELEASE ops")
                    w.changed, w.kv_changed = reaped, reaped_kv
                if w.changed:
                    conn.execute("UPDATE meta SET idx = ?, kv_idx = ? WHERE id = 1",
                                 (w.idx, w.idx if w.kv_changed else kv_idx))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if w.changed:
            with self._changed:
                self._changed.notify_all()
        return result

    def _maybe_reap_tombstones(self, w: _Write) -> None:
        self._writes += 1
        if self._writes % 256:
            return
        w.conn.execute("DELETE FROM lock_delays WHERE until <= ?", (w.now,))
        cutoff = w.now - self._tombstone_ttl
        (top,) = w.conn.execute("SELECT max(idx) FROM tombstones WHERE at < ?", (cutoff,)).fetchone()
        if top is not None:
            w.conn.execute("DELETE FROM tombstones WHERE at < ?", (cutoff,))
            w.conn.execute("UPDATE meta SET floor = max(floor, ?) WHERE id = 1", (top,))

    def _reap_if_due(self) -> None:
        """Reap expired sessions (any process may own them) before a read; looked at most every
        50 ms of this store's clock (less with a shorter minimum TTL), so a burst of reads costs one
        query, not one each; the watch loop still notices an expiry at once."""
        now = self._clock()
        if now < self._next_reap_check:
            return
        self._next_reap_check = now + min(0.05, self.session_ttl_min / 10)
        with self._use() as conn:
            row = conn.execute("SELECT min(expires_at) FROM sessions").fetchone()
        if row[0] is not None and row[0] <= now:
            self._write(lambda w: None)

    # -- KV ----------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        keys.validate_key(key)
        self._reap_if_due()
        with self._use() as conn:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()  # noqa: S608
        return _entry(row) if row else None

    def list(self, prefix: str) -> list[Entry]:
        keys.validate_prefix(prefix)
        self._reap_if_due()
        with self._use() as conn:
            return self._list(conn, prefix)

    @staticmethod
    def _list(conn: sqlite3.Connection, prefix: str) -> list[Entry]:
        rows = conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM kv WHERE key >= ? AND key < ? ORDER BY key",  # noqa: S608
            (prefix, prefix + _KEY_END),
        ).fetchall()
        return [_entry(r) for r in rows]

    def keys(self, prefix: str, separator: str | None = "/") -> list[str]:
        keys.validate_prefix(prefix)
        self._reap_if_due()
        with self._use() as conn:
            names = [r[0] for r in conn.execute(
                "SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, prefix + _KEY_END)
            )]
        return rollup(prefix, names, separator)

    def put(
        self,
        key: str,
        value: bytes,
        *,
        cas: int | None = None,
        flags: int = 0,
        acquire: str | None = None,
        release: str | None = None,
    ) -> bool:
        limits.check_put(key, value, cas, flags, acquire, release)
        value = bytes(value)

        def apply(w: _Write) -> bool:
            old = w.get(key)
            if acquire is not None:
                if w.lock_delayed(key):  # checked first, as Consul's KVS.Apply does
                    return False
                if not w.session_exists(acquire):
                    raise SessionInvalid(f"acquire {key!r}: invalid session {json.dumps(acquire)}")
                if old is None:
                    lock_index = 1
                elif old.session == acquire:
                    lock_index = old.lock_index
                elif old.session:
                    return False
                else:
                    lock_index = old.lock_index + 1
                w.store(Entry(key, value, 0, 0, lock_index, flags, acquire), old)
                return True
            if release is not None:
                if old is None or old.session != release:
                    return False
                w.store(Entry(key, value, 0, 0, old.lock_index, flags, None), old)
                return True
            if cas is not None and not _cas_matches(old, cas):
                return False
            w.store(Entry(key, value, 0, 0, old.lock_index if old else 0, flags, old.session if old else None), old)
            return True

        return bool(self._write(apply))

    def delete(self, key: str, *, cas: int | None = None, recurse: bool = False) -> bool:
        if recurse:
            limits.check_delete_tree(key, cas)
            self._write(lambda w: w.delete_tree(key))
            return True
        keys.validate_key(key)
        if cas is not None:
            limits.check_index(f"cas for key {key!r}", cas)

        def apply(w: _Write) -> bool:
            old = w.get(key)
            if cas is not None and old is not None and old.modify_index != cas:
                return False
            w.delete(key)
            return True

        return bool(self._write(apply))

    def txn(self, ops: Sequence[Op]) -> TxnResult:
        limits.check_txn(ops)
        ops = list(ops)

        def apply(w: _Write) -> TxnResult:
            results: list[Entry] = []
            errors: list[TxnError] = []
            for i, op in enumerate(ops):
                what, entry = _apply_op(w, op)
                if what is not None:
                    errors.append(TxnError(i, what))
                elif entry is not None:
                    results.append(entry)
            if errors:
                return TxnResult(ok=False, errors=tuple(errors), index=w.idx if w.reaped else w.idx - 1)
            return TxnResult(ok=True, results=tuple(results), index=w.idx if w.changed else w.idx - 1)

        result: TxnResult = self._write(apply, keep=lambda r: r.ok)
        return result

    # -- watch -------------------------------------------------------------------------------

    def _read_index(self, conn: sqlite3.Connection, key: str, recurse: bool) -> tuple[int, tuple[Entry, ...]]:
        if not recurse:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()  # noqa: S608
            if row is not None:
                entry = _entry(row)
                return max(entry.modify_index, 1), (entry,)
            (kv_idx,) = conn.execute("SELECT kv_idx FROM meta WHERE id = 1").fetchone()
            return max(kv_idx, 1), ()
        conn.execute("BEGIN")  # one snapshot for entries, tombstones and meta
        try:
            entries = self._list(conn, key)
            kv_idx, floor = conn.execute("SELECT kv_idx, floor FROM meta WHERE id = 1").fetchone()
            if key == "":
                return max(kv_idx, 1), tuple(entries)
            (tomb,) = conn.execute(
                "SELECT max(idx) FROM tombstones WHERE key >= ? AND key < ?", (key, key + _KEY_END)
            ).fetchone()
        finally:
            conn.execute("COMMIT")
        index = max([e.modify_index for e in entries] + [tomb or 0, floor if (entries or tomb) else 0])
        return max(index or kv_idx, 1), tuple(entries)

    def _prefix_index(self, conn: sqlite3.Connection, key: str) -> int:
        """The index ``_read_index`` would report for a prefix, without reading or decoding its values.

        A watcher wakes on every write to the store; most touch other prefixes, so it asks this
        cheap question first and reads the entries only when its own prefix moved.
        """
        conn.execute("BEGIN")
        try:
            (top, count) = conn.execute(
                "SELECT max(modify_index), count(*) FROM kv WHERE key >= ? AND key < ?", (key, key + _KEY_END)
            ).fetchone()
            kv_idx, floor = conn.execute("SELECT kv_idx, floor FROM meta WHERE id = 1").fetchone()
            (tomb,) = conn.execute(
                "SELECT max(idx) FROM tombstones WHERE key >= ? AND key < ?", (key, key + _KEY_END)
            ).fetchone()
        finally:
            conn.execute("COMMIT")
        index = max(top or 0, tomb or 0, floor if (count or tomb) else 0)
        return max(index or kv_idx, 1)

    def watch(self, key: str, *, index: int, wait: float, recurse: bool = False) -> WatchResult:
        if recurse:
            keys.validate_prefix(key)
        else:
            keys.validate_key(key)
        limits.check_index("watch index", index)
        deadline = time.monotonic() + max(0.0, min(wait, MAX_WAIT))
        poll = self._poll_min
        while True:
            self._reap_if_due()
            with self._use() as conn:
                # Read the global index first: a write landing between the two reads is then either
                # in `entries` or makes `now_idx != seen` below; read after, it could be in neither
                # and the watch would sleep its whole wait.
                (seen,) = conn.execute("SELECT idx FROM meta WHERE id = 1").fetchone()
                moved = index == 0 or not recurse or key == "" or self._prefix_index(conn, key) > index
                if moved:
                    current, entries = self._read_index(conn, key, recurse)
                    if current > index or index == 0:
                        return WatchResult(current, entries)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # Timed out: answer with the data as it is now, as a Consul blocking query does.
                    with self._use() as conn:
                        return WatchResult(*self._read_index(conn, key, recurse))
                with self._changed:
                    self._changed.wait(min(poll, remaining))
                if self._closed:
                    raise StoreError(f"store {self.path} is closed")
                poll = min(poll * 2, self._poll_max)
                with self._use() as conn:
                    (now_idx, next_expiry) = conn.execute(
                        "SELECT idx, (SELECT min(expires_at) FROM sessions) FROM meta WHERE id = 1"
                    ).fetchone()
                if now_idx != seen or (next_expiry is not None and next_expiry <= self._clock()):
                    poll = self._poll_min
                    break

    # -- sessions ----------------------------------------------------------------------------

    def session_create(
        self, *, name: str, ttl: float, behavior: Behavior = "release", lock_delay: float = 15.0
    ) -> str:
        if behavior not in ("release", "delete"):
            raise StoreError(f"session {name!r}: behavior must be 'release' or 'delete', got {behavior!r}")
        if not self.session_ttl_min <= ttl <= MAX_TTL:
            raise StoreError(f"session {name!r}: ttl {ttl}s must be between {self.session_ttl_min}s and {MAX_TTL}s")
        if lock_delay < 0:
            raise StoreError(f"session {name!r}: lock_delay must be >= 0, got {lock_delay}")
        lock_delay = min(lock_delay, MAX_LOCK_DELAY)
        session = str(uuid.uuid4())

        def apply(w: _Write) -> None:
            w.conn.execute(
                "INSERT INTO sessions (id, name, ttl, behavior, lock_delay, expires_at, create_index) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session, name, ttl, behavior, lock_delay, w.now + ttl * self.ttl_multiplier, w.idx),
            )
            w.changed = True

        self._write(apply)
        return session

    def session_renew(self, session: str) -> bool:
        def apply(w: _Write) -> bool:
            row = w.conn.execute("SELECT ttl FROM sessions WHERE id = ?", (session,)).fetchone()
            if row is None:
                return False
            w.conn.execute("UPDATE sessions SET expires_at = ? WHERE id = ?",
                           (w.now + row[0] * self.ttl_multiplier, session))
            return True

        return bool(self._write(apply))

    def session_destroy(self, session: str) -> None:
        self._write(lambda w: w.invalidate(session))

    def session_info(self, session: str) -> dict[str, Any] | None:
        """Diagnostics (CLI/tests): the session row, or None when it no longer exists."""
        self._reap_if_due()
        with self._use() as conn:
            row = conn.execute(
                "SELECT id, name, ttl, behavior, lock_delay, expires_at, create_index FROM sessions WHERE id = ?",
                (session,),
            ).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "name", "ttl", "behavior", "lock_delay", "expires_at", "create_index"), row,
                        strict=True))



def _cas_matches(old: Entry | None, cas: int) -> bool:
    if cas == 0:
        return old is None
    return old is not None and old.modify_index == cas


def _apply_op(w: _Write, op: Op) -> tuple[str | None, Entry | None]:
    """One txn verb, with Consul's error texts (``agent/consul/state/txn.go``)."""
    key = op.key
    q = json.dumps(key)  # Go's %q, so messages read the same on every backend
    if isinstance(op, Set):
        old = w.get(key)
        entry = w.store(Entry(key, bytes(op.value), 0, 0, old.lock_index if old else 0, op.flags,
                              old.session if old else None), old)
        return None, entry
    if isinstance(op, Cas):
        old = w.get(key)
        if not _cas_matches(old, op.index):
            return f"failed to set key {q}, index is stale", None
        entry = w.store(Entry(key, bytes(op.value), 0, 0, old.lock_index if old else 0, op.flags,
                              old.session if old else None), old)
        return None, entry
    if isinstance(op, Delete):
        w.delete(key)
        return None, None
    if isinstance(op, DeleteCas):
        old = w.get(key)
        if old is not None and old.modify_index != op.index:
            return f"failed to delete key {q}, index is stale", None
        w.delete(key)
        return None, None
    if isinstance(op, CheckIndex):
        old = w.get(key)
        if old is None:
            return f"failed to check index, key {q} doesn't exist", None
        if old.modify_index != op.index:
            return f"failed index check for key {q}, current modify index {old.modify_index} != {op.index}", None
        return None, None
    if isinstance(op, CheckNotExists):
        return (f"key {q} exists", None) if w.get(key) is not None else (None, None)
    if isinstance(op, CheckSession):
        old = w.get(key)
        if old is None:
            return f"failed to check session, key {q} doesn't exist", None
        if old.session != op.session:
            held, wanted = json.dumps(old.session or ""), json.dumps(op.session)
            return f"failed session check for key {q}, current session {held} != {wanted}", None
        return None, None
    if isinstance(op, Get):
        old = w.get(key)
        if old is None:
            return f"key {q} doesn't exist", None
        return None, old
    raise StoreError(f"unknown transaction operation {op!r}")  # pragma: no cover - check_txn refuses these


def rollup(prefix: str, names: Sequence[str], separator: str | None) -> list[str]:
    """Consul's ``?keys&separator=``: fold each key at the first separator after the prefix."""
    if not separator:
        return sorted(names)
    out: list[str] = []
    for name in sorted(names):
        cut = name.find(separator, len(prefix))
        folded = name if cut < 0 else name[: cut + len(separator)]
        if not out or out[-1] != folded:
            out.append(folded)
    return out
