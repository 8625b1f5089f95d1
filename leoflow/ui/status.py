"""The models behind Leoflow's own pages in the Airflow UI (agents, executors, git source).

Pure shaping from records the repositories return, so the pages and their JSON twins show the
same numbers and the logic is testable without a server. Time is passed in, never read here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from leoflow.domain.records import TaskInstance
from leoflow.store.repos.agent_queue import AgentLive, QueuedTry


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class RunningTry:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    pool: str
    since: datetime | None
    agent_id: str | None = None
    state: str = "running"
    executor: str = "agents"
    executor_ref: str | None = None


@dataclass(frozen=True)
class AgentRow:
    agent_id: str
    hostname: str
    pools: tuple[str, ...]
    capacity: int
    running: int
    connected: bool
    healthy: bool
    since: datetime | None
    version: str
    labels: Mapping[str, str]
    tries: tuple[RunningTry, ...] = ()

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.running) if self.healthy else 0


@dataclass(frozen=True)
class PoolRow:
    """One agent pool (the ``queue`` a task names): its queue depth and who serves it."""

    pool: str
    pending: int
    running: int
    agents: int
    capacity: int
    oldest_pending: datetime | None = None


@dataclass(frozen=True)
class AgentsView:
    agents: tuple[AgentRow, ...]
    pools: tuple[PoolRow, ...]
    generated_at: datetime

    @property
    def healthy(self) -> int:
        return sum(1 for a in self.agents if a.healthy)


@dataclass(frozen=True)
class ExecutorsView:
    pools: tuple[PoolRow, ...]
    nomad_tries: tuple[RunningTry, ...]
    agent_tries: tuple[RunningTry, ...]
    counts_by_executor: Mapping[str, int]
    generated_at: datetime


@dataclass(frozen=True)
class DagVersionRow:
    dag_id: str
    version_number: int
    commit: str | None
    created_at: datetime
    paused: bool
    stale: bool


@dataclass(frozen=True)
class GitView:
    repo: str
    ref: str
    bundle_name: str
    commit: str | None  # the last commit processed completely
    last_sync: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    warnings: tuple[str, ...]
    dags: tuple[DagVersionRow, ...]
    import_errors: tuple[tuple[str, str, datetime], ...]  # (file, the error message line, when)
    generated_at: datetime


def redact_url(url: str) -> str:
    """A repository URL without credentials (``https://user:token@host/x`` → ``https://***@host/x``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "***@" + host.rsplit("@", 1)[1]
    return f"{scheme}://{host}{slash}{path}"


def git_view(*, repo: str, ref: str, bundle_name: str, bundle: Any, entries: Iterable[Any],
             import_errors: Iterable[Any], now: datetime) -> GitView:
    """The git source page: what the sync last processed, its last error, and each DAG's version."""
    rows = tuple(sorted(
        (DagVersionRow(dag_id=e.state.dag_id, version_number=e.latest.version_number,
                       commit=e.latest.bundle_version, created_at=e.latest.created_at,
                       paused=e.state.is_paused, stale=e.state.is_stale)
         for e in entries if e.latest is not None),
        key=lambda r: r.dag_id))
    errors = tuple(sorted(
        ((err.filename, (err.stack_trace.strip().splitlines() or [""])[-1][:300], err.timestamp)
         for err in import_errors), key=lambda x: x[0]))
    return GitView(
        repo=redact_url(repo) if repo else "(bundled example DAGs)", ref=ref, bundle_name=bundle_name,
        commit=getattr(bundle, "version", None), last_sync=getattr(bundle, "last_sync_at", None),
        last_error=getattr(bundle, "last_error", None), last_error_at=getattr(bundle, "last_error_at", None),
        warnings=tuple(getattr(bundle, "warnings", ()) or ()), dags=rows, import_errors=errors, generated_at=now)


def _running(entry: QueuedTry) -> RunningTry:
    k = entry.key
    return RunningTry(dag_id=k.dag_id, run_id=k.run_id, task_id=k.task_id, map_index=k.map_index,
                      try_number=k.try_number, pool=entry.request.queue, since=_ts(entry.claimed_at),
                      agent_id=entry.agent_id, executor_ref=entry.agent_id)


def pools_view(entries: Iterable[QueuedTry], live: Iterable[AgentLive],
               healthy: Callable[[AgentLive], bool]) -> tuple[PoolRow, ...]:
    pending: Counter[str] = Counter()
    running: Counter[str] = Counter()
    oldest: dict[str, float] = {}
    for e in entries:
        pool = e.request.queue
        if e.status == "pending":
            pending[pool] += 1
            oldest[pool] = min(oldest.get(pool, e.submitted_at), e.submitted_at)
        elif e.status == "claimed":
            running[pool] += 1
    agents: Counter[str] = Counter()
    capacity: Counter[str] = Counter()
    for a in live:
        if not healthy(a):
            continue
        for pool in a.pools:
            agents[pool] += 1
            capacity[pool] += a.capacity
    names = sorted(set(pending) | set(running) | set(agents))
    return tuple(
        PoolRow(pool=p, pending=pending[p], running=running[p], agents=agents[p], capacity=capacity[p],
                oldest_pending=_ts(oldest.get(p)))
        for p in names
    )


def agents_view(live: Iterable[AgentLive], entries: Iterable[QueuedTry], server_alive: Callable[[str], bool],
                now: datetime) -> AgentsView:
    live = list(live)
    entries = list(entries)

    def healthy(a: AgentLive) -> bool:
        # Connected to a server that still holds its liveness key: a crashed server's agents
        # are not counted healthy even though their record still says "connected".
        return a.connected and server_alive(a.server_id)

    by_agent: dict[str, list[RunningTry]] = {}
    for e in entries:
        if e.status == "claimed" and e.agent_id:
            by_agent.setdefault(e.agent_id, []).append(_running(e))
    rows = tuple(
        AgentRow(agent_id=a.agent_id, hostname=a.hostname, pools=a.pools, capacity=a.capacity,
                 running=len(by_agent.get(a.agent_id, [])), connected=a.connected, healthy=healthy(a),
                 since=_ts(a.since), version=a.version, labels=dict(a.labels),
                 tries=tuple(sorted(by_agent.get(a.agent_id, []), key=lambda t: (t.dag_id, t.run_id, t.task_id))))
        for a in sorted(live, key=lambda a: (not a.connected, a.agent_id))
    )
    return AgentsView(agents=rows, pools=pools_view(entries, live, healthy), generated_at=now)


def executors_view(entries: Iterable[QueuedTry], live: Iterable[AgentLive], server_alive: Callable[[str], bool],
                   active_tis: Iterable[TaskInstance], now: datetime) -> ExecutorsView:
    """Queue depth per agent pool, plus every live try by executor (Nomad job ids for Nomad tries)."""
    entries = list(entries)
    live = list(live)

    def healthy(a: AgentLive) -> bool:
        return a.connected and server_alive(a.server_id)

    nomad: list[RunningTry] = []
    counts: Counter[str] = Counter()
    for ti in active_tis:
        executor = ti.executor or "agents"
        counts[executor] += 1
        if executor == "nomad":
            # Until Nomad has the job, the scheduler marks the try with the executor's name only.
            job = ti.executor_ref if ti.executor_ref and ti.executor_ref != executor else None
            nomad.append(RunningTry(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index,
                                    try_number=ti.try_number, pool=ti.queue, since=ti.start_date or ti.queued_dttm,
                                    state=str(ti.state), executor="nomad", executor_ref=job))
    agent_tries = tuple(sorted((_running(e) for e in entries if e.status == "claimed"),
                               key=lambda t: (t.pool, t.dag_id, t.run_id, t.task_id)))
    return ExecutorsView(pools=pools_view(entries, live, healthy),
                         nomad_tries=tuple(sorted(nomad, key=lambda t: (t.dag_id, t.run_id, t.task_id))),
                         agent_tries=agent_tries, counts_by_executor=dict(counts), generated_at=now)


def to_json(view: Any) -> Any:
    """JSON-ready form of a view (datetimes as UTC ``Z`` strings, tuples as lists)."""

    def conv(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        return v

    data = conv(asdict(view))
    if isinstance(view, AgentsView):
        data["healthy"] = view.healthy
        for row, agent in zip(data["agents"], view.agents, strict=True):
            row["free"] = agent.free
    return data
