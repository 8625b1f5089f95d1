"""A generic keyed-record repository (one key per record) behind connections, variables, pools, users.

These are small sets (tens to a few thousands of records) edited by people through the API, so a
prefix list per read is cheap and always current; writes are create-only or compare-and-set so
two editors never silently overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from leoflow.store.port import Entry, Store
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Keyspace, Page, Versioned
from leoflow.store.repos.errors import AlreadyExists, Conflict, NotFound
from leoflow.store.repos.mirror import Mirrorable

R = TypeVar("R")


class EntityRepository(Mirrorable[Versioned[R]], Generic[R]):
    """CRUD over one record type, keyed by one id field."""

    kind: str = ""
    record_type: type[Any] = object
    id_field: str = ""
    noun: str = "record"

    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def _mirrored(self) -> tuple[str, Callable[[Entry], Versioned[R]], str]:
        """Every record decoded in memory (long-lived readers: the API server's auth path).

        Only ``cached`` reads it; ``get`` stays a store read, so compare-and-set callers always
        quote the current index. This process's own writes show in ``cached`` at once; another
        process's within one watch round (``min_interval``, 50 ms by default).
        """
        return self.ks.entity_prefix(self.kind), self._decode_entry, self.kind

    def _decode_entry(self, entry: Entry) -> Versioned[R]:
        return Versioned(codec.decode(self.record_type, entry.key, entry.value), entry.modify_index,
                         entry.create_index)

    def cached(self, ident: str) -> Versioned[R] | None:
        """The record from the mirror when there is one (no store request), else from the store."""
        if self._mirror is None:
            return self.get(ident)
        return self._mirror.get(self._key(ident))

    def _observe(self, ident: str, written: Versioned[R] | None) -> None:
        if self._mirror is not None:
            self._mirror.observe(self._key(ident), written.index if written is not None else 0, written)

    def _key(self, ident: str) -> str:
        return self.ks.entity(self.kind, ident)

    def _ident(self, record: R) -> str:
        return str(getattr(record, self.id_field))

    def get(self, ident: str) -> Versioned[R] | None:
        entry = self.store.get(self._key(ident))
        return self._decode_entry(entry) if entry is not None else None

    def require(self, ident: str) -> Versioned[R]:
        found = self.get(ident)
        if found is None:
            raise NotFound(f"{self.noun} {ident!r} does not exist")
        return found

    def all(self) -> list[Versioned[R]]:
        """Every record, sorted by id: one prefix list."""
        out = [self._decode_entry(e) for e in self.store.list(self.ks.entity_prefix(self.kind))]
        return sorted(out, key=lambda v: self._ident(v.record))

    def list(
        self,
        *,
        where: Callable[[R], bool] | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Page[Versioned[R]]:
        """Filtered, ordered (a field name, ``-`` for descending, default the id) and paged."""
        items = [v for v in self.all() if where is None or where(v.record)]
        if order_by:
            desc = order_by.startswith("-")
            name = order_by.lstrip("-")
            if name == "id":
                name = self.id_field
            if name not in {f for f in self.record_type.__dataclass_fields__}:
                raise ValueError(f"order_by: cannot order {self.noun}s by {name!r}")
            items.sort(key=lambda v: (getattr(v.record, name) is None, getattr(v.record, name) or 0), reverse=desc)
        return Page(query.page(items, limit, offset), len(items))

    def create(self, record: R) -> Versioned[R]:
        """Create-only: AlreadyExists if the id is taken."""
        ident = self._ident(record)
        key = self._key(ident)
        if not self.store.put(key, codec.encode(record), cas=0):
            raise AlreadyExists(f"{self.noun} {ident!r} already exists")
        return self._written(ident)

    def update(self, old: Versioned[R], new: R) -> Versioned[R]:
        """Compare-and-set: Conflict if the record changed (or vanished) since ``old`` was read."""
        ident = self._ident(new)
        if ident != self._ident(old.record):
            raise ValueError(f"update: {self.noun} {ident!r} is not {self._ident(old.record)!r}")
        if not self.store.put(self._key(ident), codec.encode(new), cas=old.index):
            raise Conflict(f"{self.noun} {ident!r} was changed by someone else; reload and retry")
        return self._written(ident)

    def upsert(self, record: R) -> Versioned[R]:
        """Create or replace unconditionally (Airflow's bulk ``overwrite`` and variable ``set``)."""
        ident = self._ident(record)
        self.store.put(self._key(ident), codec.encode(record))
        return self._written(ident)

    def delete(self, ident: str) -> bool:
        """False if there was nothing to delete."""
        key = self._key(ident)
        if self.store.get(key) is None:
            return False
        deleted = self.store.delete(key)
        self._observe(ident, None)
        return deleted

    def _written(self, ident: str) -> Versioned[R]:
        written = self.require(ident)
        self._observe(ident, written)
        return written
