"""A generic keyed-record repository (one key per record) behind connections, variables, pools, users.

These are small sets (tens to a few thousands of records) edited by people through the API, so a
prefix list per read is cheap and always current; writes are create-only or compare-and-set so
two editors never silently overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from leoflow.store.port import Store
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Keyspace, Page, Versioned
from leoflow.store.repos.errors import AlreadyExists, Conflict, NotFound

R = TypeVar("R")


class EntityRepository(Generic[R]):
    """CRUD over one record type, keyed by one id field."""

    kind: str = ""
    record_type: type[Any] = object
    id_field: str = ""
    noun: str = "record"

    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def _key(self, ident: str) -> str:
        return self.ks.entity(self.kind, ident)

    def _ident(self, record: R) -> str:
        return str(getattr(record, self.id_field))

    def get(self, ident: str) -> Versioned[R] | None:
        entry = self.store.get(self._key(ident))
        if entry is None:
            return None
        return Versioned(codec.decode(self.record_type, entry.key, entry.value), entry.modify_index, entry.create_index)

    def require(self, ident: str) -> Versioned[R]:
        found = self.get(ident)
        if found is None:
            raise NotFound(f"{self.noun} {ident!r} does not exist")
        return found

    def all(self) -> list[Versioned[R]]:
        """Every record, sorted by id: one prefix list."""
        out = [
            Versioned(codec.decode(self.record_type, e.key, e.value), e.modify_index, e.create_index)
            for e in self.store.list(self.ks.entity_prefix(self.kind))
        ]
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
        return self.require(ident)

    def update(self, old: Versioned[R], new: R) -> Versioned[R]:
        """Compare-and-set: Conflict if the record changed (or vanished) since ``old`` was read."""
        ident = self._ident(new)
        if ident != self._ident(old.record):
            raise ValueError(f"update: {self.noun} {ident!r} is not {self._ident(old.record)!r}")
        if not self.store.put(self._key(ident), codec.encode(new), cas=old.index):
            raise Conflict(f"{self.noun} {ident!r} was changed by someone else; reload and retry")
        return self.require(ident)

    def upsert(self, record: R) -> Versioned[R]:
        """Create or replace unconditionally (Airflow's bulk ``overwrite`` and variable ``set``)."""
        ident = self._ident(record)
        self.store.put(self._key(ident), codec.encode(record))
        return self.require(ident)

    def delete(self, ident: str) -> bool:
        """False if there was nothing to delete."""
        key = self._key(ident)
        if self.store.get(key) is None:
            return False
        return self.store.delete(key)
