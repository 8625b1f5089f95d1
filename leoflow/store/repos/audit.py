"""The audit log (Airflow's ``eventLogs``): append-only, bucketed by UTC day, newest first.

Ids need no counter key (a counter would be a hot CAS key every API write fights over): an id is
the event time in milliseconds times 1000 plus three random digits, so ids sort by time, stay
below 2**53 (the UI is JavaScript), and two API workers appending at once do not collide (the create-only
write retries on the rare clash). Day buckets make retention a delete of whole prefixes and let
the newest page be read without touching older days.

Read costs (unfiltered, newest first): one keys listing of the day buckets, one keys-only listing
per recent day (older days' counts are cached in-process: nobody appends to them any more), and
one list per day bucket the page spans (usually one): 2-4 requests whatever the log's size.
Filtered or other orders: one list of the whole log.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from leoflow.domain.records import AuditEvent
from leoflow.store.port import Store
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Keyspace, Page
from leoflow.store.repos.errors import RepoError

_ORDER_FIELDS = frozenset({"id", "event_log_id", "when", "dttm", "event", "owner", "dag_id", "task_id", "run_id",
                           "map_index", "try_number", "logical_date"})


def make_id(when: datetime) -> int:
    millis = int(when.timestamp() * 1000)
    return millis * 1000 + int.from_bytes(os.urandom(2), "big") % 1000


def day_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d")


class AuditRepository:
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace
        # Entry counts of settled days (two days old or more: nobody appends there any more), so a
        # newest-first page does not list the whole log to compute total_entries.
        self._day_counts: dict[str, int] = {}

    def append(self, event: AuditEvent) -> AuditEvent:
        """Store ``event`` with a fresh ``event_log_id`` (the given one is ignored); returns it."""
        when = event.when if event.when.tzinfo else event.when.replace(tzinfo=UTC)
        for _ in range(5):
            stored = replace(event, when=when, event_log_id=make_id(when))
            if self.store.put(self.ks.audit(day_of(when), stored.event_log_id), codec.encode(stored), cas=0):
                return stored
        raise RepoError("audit log: could not allocate an event id after 5 attempts")

    def get(self, event_log_id: int) -> AuditEvent | None:
        when = datetime.fromtimestamp((event_log_id // 1000) / 1000, UTC)
        entry = self.store.get(self.ks.audit(day_of(when), event_log_id))
        return None if entry is None else codec.decode(AuditEvent, entry.key, entry.value)

    def _all(self) -> list[AuditEvent]:
        return [codec.decode(AuditEvent, e.key, e.value) for e in self.store.list(self.ks.audit_prefix())]

    def list(
        self,
        *,
        where: Callable[[AuditEvent], bool] | None = None,
        order_by: str = "-when",
        limit: int | None = 50,
        offset: int = 0,
    ) -> Page[AuditEvent]:
        """Events, newest first by default, paged, with ``total_entries``."""
        desc = order_by.startswith("-")
        name = order_by.lstrip("-")
        if name not in _ORDER_FIELDS:
            allowed = ", ".join(sorted(_ORDER_FIELDS))
            raise ValueError(f"order_by: cannot order event logs by {name!r}; allowed: {allowed}")
        name = {"id": "event_log_id", "dttm": "when"}.get(name, name)
        if where is None and name in ("when", "event_log_id") and desc:
            return self._newest_page(limit, offset)
        items = [e for e in self._all() if where is None or where(e)]
        items.sort(key=lambda e: (getattr(e, name) is None, getattr(e, name) or 0, e.event_log_id), reverse=desc)
        return Page(query.page(items, limit, offset), len(items))

    def _newest_page(self, limit: int | None, offset: int) -> Page[AuditEvent]:
        query.page([], limit, offset)  # validates limit/offset
        prefix = self.ks.audit_prefix()
        days = sorted((p[len(prefix):].rstrip("/") for p in self.store.keys(prefix, separator="/")), reverse=True)
        settled = day_of(datetime.now(UTC) - timedelta(days=2))  # no writer's clock is that far behind
        self._day_counts = {d: n for d, n in self._day_counts.items() if d in days}
        counts: dict[str, int] = {}
        for day in days:
            if day in self._day_counts:
                counts[day] = self._day_counts[day]
                continue
            counts[day] = len(self.store.keys(self.ks.audit_prefix(day), separator=None))
            if day < settled:
                self._day_counts[day] = counts[day]
        total = sum(counts.values())
        items: list[AuditEvent] = []
        skip, need = offset, limit
        for day in days:
            if need is not None and need <= 0:
                break
            if skip >= counts[day]:
                skip -= counts[day]
                continue
            entries = sorted(self.store.list(self.ks.audit_prefix(day)), key=lambda e: e.key, reverse=True)
            wanted = entries[skip:] if need is None else entries[skip : skip + need]
            skip = 0
            items.extend(codec.decode(AuditEvent, e.key, e.value) for e in wanted)
            if need is not None:
                need -= len(wanted)
        return Page(items, total)

    def expire(self, before: datetime, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete whole day buckets older than ``before``'s day; returns (events, bytes)."""
        cutoff = day_of(before)
        events = size = 0
        for day_prefix in self.store.keys(self.ks.audit_prefix(), separator="/"):
            day = day_prefix.rstrip("/").rsplit("/", 1)[-1]
            if day >= cutoff:
                continue
            entries = self.store.list(day_prefix)
            events += len(entries)
            size += sum(len(e.key) + len(e.value) for e in entries)
            if not dry_run:
                self.store.delete(day_prefix, recurse=True)
        return events, size
