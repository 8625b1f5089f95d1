"""Revoked JWTs (logout), like Airflow's ``revoked_token`` table: one small key per revoked ``jti``.

A revoked token only needs remembering until it would have expired anyway, so each entry carries
``expires_at`` and ``purge_expired`` (run by ``leoflow db clean``) deletes the rest: bounded growth.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from leoflow.store.port import Store
from leoflow.store.repos.base import Keyspace

KIND = "revoked_tokens"


class TokenRepository:
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def revoke(self, jti: str, expires_at: datetime) -> None:
        """Idempotent: revoking twice keeps one entry."""
        body = json.dumps({"jti": jti, "expires_at": expires_at.astimezone(UTC).isoformat()}).encode()
        self.store.put(self.ks.entity(KIND, jti), body)

    def is_revoked(self, jti: str) -> bool:
        return self.store.get(self.ks.entity(KIND, jti)) is not None

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
