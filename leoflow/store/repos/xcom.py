"""XCom: small JSON values a task returns, one key each, fenced by the try that wrote them.

Values are capped at 256 KiB of JSON (``XComTooLarge`` otherwise, nothing stored). They live
under their own prefix (``xcom/``), never inside run records, TI keys or packed runs, so the hot
reads (a run's TIs, the run list) never carry them. Per anchors §3, KV is no place for big
payloads: 256 KiB is the hard cap, and the ADR records why bigger data belongs in object storage
that a task writes itself (the XCom then holds its URL).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from leoflow.domain.records import XComEntry
from leoflow.store import keys
from leoflow.store.port import Op, Set, Store
from leoflow.store.repos import codec, query
from leoflow.store.repos.base import Keyspace, Page, TIKey
from leoflow.store.repos.errors import CorruptRecord, StaleTry, XComTooLarge

MAX_XCOM_BYTES = 256 * 1024
RETURN_VALUE = "return_value"


def _entry(key: str, value: bytes) -> tuple[XComEntry, int]:
    data = codec.load(key, value)
    try:
        entry = XComEntry(
            dag_id=data["dag_id"], run_id=data["run_id"], task_id=data["task_id"], key=data["key"],
            value=data["value"], timestamp=datetime.fromisoformat(data["timestamp"]),
            map_index=data.get("map_index", -1),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord(f"value of key {key!r} is not an XCom entry: {exc}") from exc
    return entry, int(data.get("try_number", 0))


class XComRepository:
    def __init__(self, store: Store, keyspace: Keyspace) -> None:
        self.store = store
        self.ks = keyspace

    def _body(self, ti: TIKey, key: str, value: Any, try_number: int, timestamp: datetime) -> bytes:
        try:
            payload = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"XCom {key!r} of task {ti.task_id!r}: value is not JSON-serialisable: {exc}") from exc
        size = len(payload.encode("utf-8"))
        if size > MAX_XCOM_BYTES:
            raise XComTooLarge(f"XCom {key!r} of task {ti.task_id!r} is {size} bytes of JSON, over the "
                               f"{MAX_XCOM_BYTES} byte (256 KiB) limit; store big data elsewhere and return its URL")
        return codec.encode_json({
            "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index,
            "key": key, "try_number": try_number, "timestamp": timestamp, "value": value,
        })

    def set_ops(self, ti: TIKey, key: str, value: Any, *, try_number: int, timestamp: datetime) -> list[Op]:
        """One blind Set, for the SAME txn as the TI's terminal transition (whose CAS fences the try).

        Raises XComTooLarge / ValueError before anything is sent.
        """
        return [Set(self.ks.xcom(ti, key), self._body(ti, key, value, try_number, timestamp))]

    def set(
        self, ti: TIKey, key: str, value: Any, *, try_number: int, timestamp: datetime
    ) -> XComEntry:
        """Store ``value`` (JSON-serialisable) written by try ``try_number`` of ``ti``, on its own.

        Refused with StaleTry when a newer try already wrote this key (a late write of an old try
        never replaces a newer value); XComTooLarge over 256 KiB; ValueError if not JSON.
        """
        store_key = self.ks.xcom(ti, key)
        body = self._body(ti, key, value, try_number, timestamp)
        for _ in range(5):
            current = self.store.get(store_key)
            if current is not None:
                _, written_by = _entry(current.key, current.value)
                if written_by > try_number:
                    raise StaleTry(f"XCom {key!r} of task {ti.task_id!r} was written by try {written_by}; "
                                   f"refusing the value of try {try_number}")
            if self.store.put(store_key, body, cas=current.modify_index if current else 0):
                return XComEntry(ti.dag_id, ti.run_id, ti.task_id, key, value, timestamp, ti.map_index)
        raise StaleTry(f"XCom {key!r} of task {ti.task_id!r}: lost 5 races in a row")

    def get(self, ti: TIKey, key: str = RETURN_VALUE) -> XComEntry | None:
        entry = self.store.get(self.ks.xcom(ti, key))
        return None if entry is None else _entry(entry.key, entry.value)[0]

    def list(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        key: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Page[XComEntry]:
        """Entries under the narrowest prefix the filters allow (``None`` = Airflow's ``~``), sorted by
        (dag, run, task, map_index, key)."""
        prefix = self.ks.xcom_prefix(dag_id, run_id if dag_id else None, task_id if dag_id and run_id else None)
        items = []
        for e in self.store.list(prefix):
            x, _ = _entry(e.key, e.value)
            if (dag_id is not None and x.dag_id != dag_id) or (run_id is not None and x.run_id != run_id):
                continue
            if (task_id is not None and x.task_id != task_id) or (map_index is not None and x.map_index != map_index):
                continue
            if key is not None and x.key != key:
                continue
            items.append(x)
        items.sort(key=lambda x: (x.dag_id, x.run_id, x.task_id, x.map_index, x.key))
        return Page(query.page(items, limit, offset), len(items))

    def delete(self, ti: TIKey, key: str | None = None) -> int:
        """Delete one key of a TI, or all its XComs (a new try starts clean, as in Airflow)."""
        if key is not None:
            k = self.ks.xcom(ti, key)
            return 1 if self.store.get(k) is not None and self.store.delete(k) else 0
        prefix = keys.prefix_of(*self.ks.xcom_prefix(ti.dag_id, ti.run_id, ti.task_id).rstrip("/").split("/"),
                                str(ti.map_index))
        found = self.store.keys(prefix, separator=None)
        if found:
            self.store.delete(prefix, recurse=True)
        return len(found)

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self.store.delete(self.ks.xcom_prefix(dag_id, run_id), recurse=True)
