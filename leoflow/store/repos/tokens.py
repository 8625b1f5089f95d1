"""Revoked JWTs (logout), like Airflow's ``revoked_token`` table: one small key per revoked ``jti``.

A revoked token only needs remembering until it would have expired anyway, so each entry carries
``expires_at`` and ``purge_expired`` (run by ``leoflow db clean``) deletes the rest: bounded growth.
Every authenticated request asks ``is_revoked``; the API server mirrors the prefix in memory
(``mirror``) so that costs no store request (ADR 0059).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from leoflow.store.port import Entry, Set, Store
from leoflow.store.repos.base import Keyspace, run_txn
from leoflow.store.repos.mirror import Mirrorable

KIND = "revoked_tokens"


class TokenRepository(Mirrorable[bool]):
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def _mirrored(self) -> tuple[str, Callable[[Entry], bool], str]:
        """``is_revoked`` from memory: this process's revocations at once, another's within a round."""
        return self.ks.entity_prefix(KIND), _present, KIND

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
