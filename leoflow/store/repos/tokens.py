"""Revoked JWTs (logout), like Airflow's ``revoked_token`` table: one small key per revoked ``jti``.

A revoked token only needs remembering until it would have expired anyway, so each entry carries
``expires_at`` and ``purge_expired`` (run by ``leoflow db clean``) deletes the rest: bounded growth.
Every authenticated request asks ``is_revoked``; the API server mirrors the prefix in memory
(``mirror``) so that costs no store request (ADR 0059).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from leoflow.store.port import Entry, Set, Store
from leoflow.store.repos.base import Keyspace, run_txn
from leoflow.store.repos.follower import PrefixFollower
from leoflow.store.repos.mirror import PrefixMirror

KIND = "revoked_tokens"


class TokenRepository:
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace
        self._mirror: PrefixMirror[bool] | None = None

    def mirror(self, *, wait: float, min_interval: float = 0.05) -> PrefixMirror[bool]:
        """Answer ``is_revoked`` from memory: this process's revocations at once, another's within a round."""
        if self._mirror is None:
            self._mirror = PrefixMirror(self.store, self.ks.entity_prefix(KIND), _present, name=KIND,
                                        wait=wait, min_interval=min_interval).start()
        return self._mirror

    def watchers(self) -> list[PrefixFollower]:
        """The watch threads to stop before the store closes (``Repositories.close``)."""
        return [self._mirror] if self._mirror is not None else []

    def revoke(self, jti: str, expires_at: datetime) -> None:
        """Idempotent: revoking twice keeps one entry."""
        key = self.ks.entity(KIND, jti)
        body = json.dumps({"jti": jti, "expires_at": expires_at.astimezone(UTC).isoformat()}).encode()
        result = run_txn(self.store, [Set(key, body)], what=f"revoke token {jti}")
        if self._mirror is not None:
            self._mirror.observe(key, result.results[0].modify_index, True)

    def is_revoked(self, jti: str) -> bool:
        key = self.ks.entity(KIND, jti)
        if self._mirror is not None:
            return self._mirror.get(key) is not None
        return self.store.get(key) is not None

    def purge_expired(self, now: datetime, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete entries whose token has expired; returns (entries, bytes)."""
        count = size = 0
        for e in self.store.list(self.ks.entity_prefix(KIND)):
            try:
                expires = datetime.fromisoformat(json.loads(e.value)["expires_at"])
            except (ValueError, KeyError, TypeError):
                expires = now  # unreadable: nothing can depend on it
            if expires <= now:
                count += 1
                size += len(e.key) + len(e.value)
                if not dry_run:
                    self.store.delete(e.key, cas=e.modify_index)
        return count, size


def _present(entry: Entry) -> bool:
    return True
