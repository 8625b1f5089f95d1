"""DAG favorites per user (the UI's star): one empty-valued key per (user, dag), listed per user.

One key per pair rather than a set per user, so two browser tabs starring different DAGs at once
never overwrite each other (no read-modify-write). The DAG list pages read a user's favorites on
every request; the API server mirrors the prefix in memory (``mirror``) so that costs no store
request (ADR 0059).
"""

from __future__ import annotations

from collections.abc import Callable

from leoflow.store import keys
from leoflow.store.port import MAX_TXN_OPS, Delete, Entry, Set, Store
from leoflow.store.repos.base import Keyspace, run_txn
from leoflow.store.repos.mirror import Mirrorable

KIND = "favorites"


class FavoriteRepository(Mirrorable[tuple[str, str]]):
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace
        self._by_user: tuple[int, dict[str, frozenset[str]]] = (-1, {})

    def _mirrored(self) -> tuple[str, Callable[[Entry], tuple[str, str]], str]:
        """``for_user`` from memory: this process's stars at once, another's within a round."""
        return keys.prefix_of(self.ks.root, KIND), self._decode_entry, KIND

    def _prefix(self, username: str) -> str:
        return keys.prefix_of(self.ks.root, KIND, keys.encode_id(username))

    def _decode_entry(self, entry: Entry) -> tuple[str, str]:
        user, _, dag = entry.key[len(keys.prefix_of(self.ks.root, KIND)):].partition("/")
        return keys.decode_id(user), keys.decode_id(dag)

    def for_user(self, username: str) -> set[str]:
        """The user's favorite DAG ids: from the mirror, or one keys-only listing."""
        if self._mirror is not None:
            generation, by_user = self._by_user
            now = self._mirror.generation  # read before the data: a racing change only makes the tag older
            if generation != now:
                grouped: dict[str, set[str]] = {}
                for user, dag in self._mirror.values():
                    grouped.setdefault(user, set()).add(dag)
                by_user = {user: frozenset(dags) for user, dags in grouped.items()}
                self._by_user = (now, by_user)
            return set(by_user.get(username, ()))
        prefix = self._prefix(username)
        return {keys.decode_id(k[len(prefix):]) for k in self.store.keys(prefix, separator=None)}

    def add(self, username: str, dag_id: str) -> None:
        key = self._prefix(username) + keys.encode_id(dag_id)
        result = run_txn(self.store, [Set(key, b"1")], what=f"favorite {dag_id}")
        if self._mirror is not None:
            self._mirror.observe(key, result.results[0].modify_index, (username, dag_id))

    def remove(self, username: str, dag_id: str) -> bool:
        key = self._prefix(username) + keys.encode_id(dag_id)
        if self.store.get(key) is None:
            return False
        deleted = self.store.delete(key)
        if self._mirror is not None:
            self._mirror.observe(key, 0, None)
        return deleted

    def forget_dag(self, dag_id: str) -> None:
        """Every user's star of a deleted DAG: one keys listing, deletes in as few txns as allowed."""
        prefix = keys.prefix_of(self.ks.root, KIND)
        suffix = "/" + keys.encode_id(dag_id)
        stars = [k for k in self.store.keys(prefix, separator=None)
                 if k.endswith(suffix) and k[len(prefix):].count("/") == 1]
        for i in range(0, len(stars), MAX_TXN_OPS):
            run_txn(self.store, [Delete(k) for k in stars[i:i + MAX_TXN_OPS]], what=f"favorites of DAG {dag_id!r}")
        if self._mirror is not None:
            for key in stars:
                self._mirror.observe(key, 0, None)
