"""DAG favorites per user (the UI's star): one empty-valued key per (user, dag), listed per user.

One key per pair rather than a set per user, so two browser tabs starring different DAGs at once
never overwrite each other (no read-modify-write).
"""

from __future__ import annotations

from leoflow.store import keys
from leoflow.store.port import Store
from leoflow.store.repos.base import Keyspace

KIND = "favorites"


class FavoriteRepository:
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def _prefix(self, username: str) -> str:
        return keys.prefix_of(self.ks.root, KIND, keys.encode_id(username))

    def for_user(self, username: str) -> set[str]:
        """The user's favorite DAG ids: one keys-only listing."""
        prefix = self._prefix(username)
        return {keys.decode_id(k[len(prefix):]) for k in self.store.keys(prefix, separator=None)}

    def add(self, username: str, dag_id: str) -> None:
        self.store.put(self._prefix(username) + keys.encode_id(dag_id), b"1")

    def remove(self, username: str, dag_id: str) -> bool:
        key = self._prefix(username) + keys.encode_id(dag_id)
        if self.store.get(key) is None:
            return False
        return self.store.delete(key)
