"""The grid: ``/ui/grid/structure``, ``/ui/grid/runs`` and ``/ui/grid/ti_summaries`` (NDJSON).

The DAG page polls these every few seconds while a run is active, so each is a handful of reads:
the run list comes from the in-process run projection, a run's task instances from one prefix
list, parsed DAG versions from a process-wide cache. ``ti_summaries`` carries an ETag so an
unchanged grid costs the browser a 304 instead of a body.

Task rows follow the latest version of the DAG, plus rows of tasks that only older versions (used
by the runs on screen) had, as Airflow merges them; task instances are summarised against the
version their run used.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import falcon

from leoflow.api import dto
from leoflow.api.auth.roles import Role
from leoflow.api.context import AppContext
from leoflow.api.public import _runs
from leoflow.api.ui import _common
from leoflow.domain.records import TaskInstance

NDJSON = "application/x-ndjson"


def _node(dag: Any, task_id: str) -> dict[str, Any]:
    task = dag.tasks[task_id]
    node: dict[str, Any] = {"id": task_id, "label": task_id, "is_mapped": None}
    if task.is_setup:
        node["setup_teardown_type"] = "setup"
    elif task.is_teardown:
        node["setup_teardown_type"] = "teardown"
    return node


class GridStructure:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        entry = _common.require_dag(self.ctx, dag_id)
        root = dto.query_str(req, "root")
        upstream = bool(dto.query_bool(req, "include_upstream", default=False))
        downstream = bool(dto.query_bool(req, "include_downstream", default=False))
        depth = dto.query_int(req, "depth", minimum=0)
        q = _common.run_query(req, dag_id)
        latest = _common.dag_version(self.ctx, entry, None)
        nodes = [_node(latest, t) for t in _common.subset(latest, root, upstream, downstream, depth)]
        seen = {n["id"] for n in nodes}
        # Rows of tasks that exist only in older versions still used by the runs on screen.
        latest_number = _common.latest_number(entry)
        numbers = sorted({v.record.dag_version_number for v in self.ctx.repos.runs.list(q).items} - {latest_number})
        for number in reversed(numbers):
            old = _runs.dag_at(self.ctx, dag_id, number) if number else None
            if old is None:
                continue
            for task_id in _common.subset(old, root, upstream, downstream, depth):
                if task_id not in seen:
                    seen.add(task_id)
                    nodes.append(_node(old, task_id))
        resp.media = nodes


class GridRuns:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        _common.require_dag(self.ctx, dag_id)
        q = _common.run_query(req, dag_id)
        now = _common.now(self.ctx)
        versions = _runs.Versions(self.ctx)
        out = []
        for v in self.ctx.repos.runs.list(q).items:
            run = v.record
            version = versions.get(run.dag_id, run.dag_version_number)
            out.append({
                "dag_id": run.dag_id,
                "run_id": run.run_id,
                "queued_at": dto.iso(run.queued_at),
                "start_date": dto.iso(run.start_date),
                "end_date": dto.iso(run.end_date),
                "run_after": dto.iso(run.run_after),
                "state": str(run.state),
                "run_type": str(run.run_type),
                "dag_versions": [version] if version is not None else [],
                "has_missed_deadline": False,  # Leoflow has no deadlines
                "has_note": bool(run.note),
                "duration": _common.run_duration(run, now),
            })
        resp.media = out


def summarize(dag_id: str, run_id: str, order: list[str], tis: list[TaskInstance]) -> dict[str, Any] | None:
    """One ``GridTISummaries`` line: a summary per task in ``order``, then tasks the version lacks."""
    if not tis:
        return None
    by_task: dict[str, list[TaskInstance]] = {}
    for ti in tis:
        by_task.setdefault(ti.task_id, []).append(ti)
    known = set(order)
    task_ids = [t for t in order if t in by_task] + sorted(t for t in by_task if t not in known)
    lines = []
    for task_id in task_ids:
        group = by_task[task_id]
        starts = [t.start_date for t in group if t.start_date is not None]
        ends = [t.end_date for t in group if t.end_date is not None]
        mapped = len(group) > 1 or group[0].map_index >= 0
        states = [str(t.state) if t.state is not None else None for t in group]
        state = states[0] if not mapped else _aggregate(states)
        child: dict[str, int] | None = None
        if mapped:
            child = {}
            for s in states:
                child[s or "none"] = child.get(s or "none", 0) + 1
        lines.append({
            "task_id": task_id,
            "task_display_name": task_id,
            "state": state,
            "child_states": child,
            "min_start_date": dto.iso(min(starts)) if starts else None,
            "max_end_date": dto.iso(max(ends)) if ends else None,
            "dag_version_number": max(t.dag_version_number for t in group) or None,
            "has_note": any(t.note for t in group),
        })
    return {"run_id": run_id, "dag_id": dag_id, "task_instances": lines}


# Airflow's state_priority: the state a group shows is the first of these any member has.
STATE_PRIORITY = ("failed", "upstream_failed", "up_for_retry", "up_for_reschedule", "queued", "scheduled",
                  "deferred", "running", "restarting", None, "success", "skipped", "removed")


def _aggregate(states: list[str | None]) -> str | None:
    present = set(states)
    for s in STATE_PRIORITY:
        if s in present:
            return s
    return None


class LineCache:
    """Summary lines keyed by run, valid while the run's TI entries are unchanged (same count, same
    highest modify index) and the run uses the same DAG version: decoding 50 TIs per run on every
    poll is most of this endpoint's cost, and finished runs never change unless cleared or marked.
    One cache per app (so per store), bounded, thread-safe."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lines: OrderedDict[tuple[str, str], tuple[tuple[int, ...], str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], stamp: tuple[int, ...]) -> tuple[bool, str | None]:
        with self._lock:
            hit = self._lines.get(key)
            if hit is not None and hit[0] == stamp:
                self._lines.move_to_end(key)
                return True, hit[1]
        return False, None

    def put(self, key: tuple[str, str], stamp: tuple[int, ...], line: str | None) -> None:
        with self._lock:
            self._lines[key] = (stamp, line)
            self._lines.move_to_end(key)
            while len(self._lines) > self.size:
                self._lines.popitem(last=False)


class TiSummaries:
    roles = {"GET": Role.VIEWER}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.lines = LineCache()

    def _line(self, dag_id: str, run: Any, latest_number: int | None) -> str | None:
        tis = self.ctx.repos.task_instances
        prefix = tis.run_prefix(dag_id, run.run_id)
        entries = tis.store.list(prefix)
        version = run.dag_version_number or latest_number or 0
        stamp = (version, len(entries), max((e.modify_index for e in entries), default=0))
        hit, line = self.lines.get((dag_id, run.run_id), stamp)
        if hit:
            return line
        snap = tis.cache.snapshot(dag_id, run.run_id, prefix, entries)
        dag = _runs.dag_at(self.ctx, dag_id, version) if version else None
        order = _common.task_order(dag) if dag is not None else []
        doc = summarize(dag_id, run.run_id, order, [v.record for v in snap.current])
        line = None if doc is None else json.dumps(doc, separators=(",", ":")) + "\n"
        self.lines.put((dag_id, run.run_id), stamp, line)
        return line

    def on_get(self, req: falcon.Request, resp: falcon.Response, dag_id: str) -> None:
        entry = _common.require_dag(self.ctx, dag_id)
        latest_number = _common.latest_number(entry)
        chunks: list[str] = []
        for run_id in dict.fromkeys(dto.query_list(req, "run_ids")):
            found = self.ctx.repos.runs.peek(dag_id, run_id)
            if found is None:
                continue
            line = self._line(dag_id, found.record, latest_number)
            if line is not None:
                chunks.append(line)
        body = "".join(chunks).encode()
        etag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        resp.set_header("ETag", etag)
        resp.cache_control = ["no-cache"]
        if etag in (req.get_header("If-None-Match") or ""):
            resp.status = falcon.HTTP_304
            resp.content_type = None
            return
        resp.content_type = NDJSON
        resp.data = body


def register(app: falcon.App, ctx: AppContext) -> None:
    app.add_route("/ui/grid/structure/{dag_id}", GridStructure(ctx))
    app.add_route("/ui/grid/runs/{dag_id}", GridRuns(ctx))
    app.add_route("/ui/grid/ti_summaries/{dag_id}", TiSummaries(ctx))
