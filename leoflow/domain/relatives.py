"""Upstream/downstream closures over a DAG, computed once per DAG object and cached.

Clearing, marking and the setup/teardown rules all ask "every task above/below this one";
caching by DAG identity keeps that O(1) per question inside a scheduler wake-up, and DAG objects
are immutable so the cache can never go stale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from leoflow.domain.dag import DAG
from leoflow.domain.graph import closures


@dataclass(frozen=True)
class Graph:
    upstream: Mapping[str, frozenset[str]]
    downstream: Mapping[str, frozenset[str]]
    # Transitive closures.
    ancestors: Mapping[str, frozenset[str]]
    descendants: Mapping[str, frozenset[str]]
    # Tasks that are nobody's upstream: Airflow decides a run's outcome from these.
    leaves: frozenset[str]
    # Most DAGs have no setup task; then no task has relevant setups and the lookup is skipped.
    has_setups: bool = False


_CACHE_SIZE = 512
# id(dag) -> (dag, graph); the DAG is kept so its id cannot be reused while cached. DAGs hold dicts
# and so are not hashable, hence identity rather than functools.lru_cache.
_cache: dict[int, tuple[DAG, Graph]] = {}


def graph_of(dag: DAG) -> Graph:
    hit = _cache.get(id(dag))
    if hit is not None and hit[0] is dag:
        return hit[1]
    graph = _build(dag)
    if len(_cache) >= _CACHE_SIZE:
        # Another thread may change the cache meanwhile; losing one eviction is harmless.
        with contextlib.suppress(StopIteration, RuntimeError):
            _cache.pop(next(iter(_cache)), None)
    _cache[id(dag)] = (dag, graph)
    return graph


def _build(dag: DAG) -> Graph:
    upstream = {tid: frozenset(t.upstream & dag.tasks.keys()) for tid, t in dag.tasks.items()}
    downstream: dict[str, set[str]] = {tid: set() for tid in dag.tasks}
    for tid, ups in upstream.items():
        for up in ups:
            downstream[up].add(tid)
    down = {k: frozenset(v) for k, v in downstream.items()}
    return Graph(
        upstream=upstream,
        downstream=down,
        ancestors=closures(upstream),
        descendants=closures(down),
        leaves=frozenset(tid for tid, d in down.items() if not d),
        has_setups=any(t.is_setup for t in dag.tasks.values()),
    )


def expand(dag: DAG, task_ids: Iterable[str], *, upstream: bool, downstream: bool) -> set[str]:
    """``task_ids`` plus, on request, all their ancestors and/or descendants."""
    graph = graph_of(dag)
    selected = set(task_ids)
    extra: set[str] = set()
    for tid in selected:
        if upstream:
            extra |= graph.ancestors.get(tid, frozenset())
        if downstream:
            extra |= graph.descendants.get(tid, frozenset())
    return selected | extra


def relevant_setups(dag: DAG, task_id: str) -> frozenset[str]:
    """Airflow's ``get_upstreams_only_setups``: upstream setups whose teardown (if any) is below us.

    A setup with no teardown is always relevant; one with teardowns is relevant only if one of
    them is downstream of ``task_id`` (i.e. the task lies within the setup's scope).
    """
    graph = graph_of(dag)
    if not graph.has_setups:
        return frozenset()
    teardowns_below = {t for t in graph.descendants.get(task_id, frozenset()) if dag.tasks[t].is_teardown}
    result = set()
    for anc in graph.ancestors.get(task_id, frozenset()):
        if not dag.tasks[anc].is_setup:
            continue
        teardowns = {d for d in graph.downstream[anc] if dag.tasks[d].is_teardown}
        if not teardowns or teardowns & teardowns_below:
            result.add(anc)
    return frozenset(result)
