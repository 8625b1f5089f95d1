"""Bounded growth: expire finished runs after the retention period, compact the rest, drop old
audit entries, expired token revocations and orphans (``leoflow db clean``).

Only finished runs expire (their ``end_date``, else ``run_after``, older than the cutoff); an
active run is never touched whatever its age. Finished runs younger than the cutoff are compacted
(TIs and tries folded into one value per run). A dry run reads the same keys and reports what it
would remove, changing nothing.

Orphans are TI or XCom keys of a run whose run key does not exist: a run deleted by a process that
crashed before its recursive deletes, or a chunked run creation that crashed before its last txn.
Because a chunked creation in flight looks the same for a few milliseconds, an orphan is removed
only if it is still an orphan, unchanged, after ``orphan_grace`` seconds, by delete-cas txns that
also check the run key is still absent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from leoflow.store import keys
from leoflow.store.port import MAX_TXN_OPS, CheckNotExists, DeleteCas, Entry, Op, Store
from leoflow.store.repos.base import CleanReport, Keyspace
from leoflow.store.repos.errors import Conflict
from leoflow.store.repos.runs import ACTIVE_RUN_STATES, decode_run

if TYPE_CHECKING:
    from leoflow.store.repos import Repositories


def _indexes(entries: list[Entry]) -> dict[str, int]:
    return {e.key: e.modify_index for e in entries}


def _size(entries: list[Entry]) -> int:
    return sum(len(e.key) + len(e.value) for e in entries)


def clean(
    repos: Repositories,
    *,
    now: datetime,
    retention_days: float,
    dry_run: bool = False,
    compact: bool = True,
    orphan_grace: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CleanReport:
    """Apply retention to everything the repositories store; returns what was (or would be) removed."""
    if retention_days < 0:
        raise ValueError(f"retention_days: must be >= 0, got {retention_days}")
    runs = repos.runs
    store = runs.store
    ks = runs.ks
    cutoff = now - timedelta(days=retention_days)
    report = CleanReport(dry_run=dry_run)
    n_runs = n_keys = n_bytes = 0
    details: list[str] = []

    run_entries = store.list(ks.runs_prefix())
    run_keys = {e.key for e in run_entries}
    compactable: list[tuple[str, str]] = []
    for entry in run_entries:
        run = decode_run(entry).record
        if run.state in ACTIVE_RUN_STATES:
            continue
        finished_at = run.end_date or run.run_after
        if finished_at >= cutoff:
            compactable.append((run.dag_id, run.run_id))
            continue
        ti_entries = store.list(ks.ti_run_prefix(run.dag_id, run.run_id))
        xcom_entries = store.list(ks.xcom_prefix(run.dag_id, run.run_id))
        n_runs += 1
        n_keys += 1 + len(ti_entries) + len(xcom_entries)
        n_bytes += _size([entry, *ti_entries, *xcom_entries])
        details.append(f"run {run.dag_id}/{run.run_id} (finished {finished_at.isoformat()})")
        if not dry_run:
            try:
                runs.delete(run.dag_id, run.run_id)
            except Conflict:
                details.append(f"run {run.dag_id}/{run.run_id} changed meanwhile; kept")

    if compact and not dry_run:
        for dag_id, run_id in compactable:
            try:
                runs.compact(dag_id, run_id)
            except Conflict:
                continue  # changed meanwhile (a clear): it is not finished any more or will be next time

    audit_events, audit_bytes = repos.audit.expire(cutoff, dry_run=dry_run)
    token_count, token_bytes = repos.tokens.purge_expired(now, dry_run=dry_run)
    n_keys += audit_events + token_count
    n_bytes += audit_bytes + token_bytes

    orphans = _orphans(store, ks, run_keys)
    if orphans and not dry_run:
        sleep(orphan_grace)
        confirmed = _orphans(store, ks, {e.key for e in store.list(ks.runs_prefix())})
        orphans = {k: v for k, v in confirmed.items() if k in orphans and _indexes(v) == _indexes(orphans[k])}
        for run_key, entries in orphans.items():
            _delete_orphan(store, run_key, entries)
    n_orphans = sum(len(v) for v in orphans.values())
    n_keys += n_orphans
    n_bytes += sum(_size(v) for v in orphans.values())
    details.extend(f"orphans of {k}: {len(v)} keys" for k, v in orphans.items())
    return replace(report, runs=n_runs, audit_events=audit_events, orphans=n_orphans, keys=n_keys, bytes=n_bytes,
                   details=details)


def _orphans(store: Store, ks: Keyspace, run_keys: set[str]) -> dict[str, list[Entry]]:
    """TI/XCom entries grouped by the run key they belong to, for runs that do not exist."""
    out: dict[str, list[Entry]] = {}
    for prefix in (ks.ti_dag_prefix(), ks.xcom_prefix()):
        for e in store.list(prefix):
            parts = e.key[len(prefix):].split("/")
            if len(parts) < 2:
                continue
            run_key = keys.join(ks.root, "runs", parts[0], parts[1])
            if run_key not in run_keys:
                out.setdefault(run_key, []).append(e)
    return out


def _delete_orphan(store: Store, run_key: str, entries: list[Entry]) -> None:
    step = MAX_TXN_OPS - 1
    for i in range(0, len(entries), step):
        ops: list[Op] = [CheckNotExists(run_key), *(DeleteCas(e.key, e.modify_index) for e in entries[i : i + step])]
        store.txn(ops)  # a failure means it is no longer an orphan (its run appeared): keep it
