"""The task graph of a DAG: order, neighbourhoods and cycles.

Works on a plain ``{task_id: upstream ids}`` mapping so the loaders can check a graph before a
``DAG`` exists, and the scheduler can ask the same questions of a built one. Orders are
deterministic (ties broken by task id) so that serialized forms and UI listings are stable.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from leoflow.domain.dag import DAG

Edges = Mapping[str, Iterable[str]]  # task_id -> its upstream task ids


class CycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists it in dependency order, first id repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("cycle in task dependencies: " + " -> ".join(cycle))


def edges_of(dag: DAG) -> dict[str, frozenset[str]]:
    return {task_id: task.upstream for task_id, task in dag.tasks.items()}


def downstream_map(edges: Edges) -> dict[str, set[str]]:
    """Invert upstream edges: task -> the tasks that directly depend on it."""
    down: dict[str, set[str]] = {task_id: set() for task_id in edges}
    for task_id, ups in edges.items():
        for up in ups:
            down.setdefault(up, set()).add(task_id)
    return down


def find_cycle(edges: Edges) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]`` (a runs before b), or None. Deterministic for a given graph."""
    down = downstream_map(edges)
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(down, white)
    for root in sorted(down):
        if color[root] != white:
            continue
        # Iterative DFS along downstream edges, so long chains cannot hit the recursion limit.
        path: list[str] = [root]
        stack = [iter(sorted(down[root]))]
        color[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
                continue
            if color.get(nxt, white) == grey:
                return [*path[path.index(nxt):], nxt]
            if color.get(nxt, white) == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(down.get(nxt, ()))))
    return None


def topological_order(edges: Edges) -> list[str]:
    """Kahn's algorithm, smallest task id first among ready tasks; raises CycleError naming the cycle."""
    down = downstream_map(edges)
    indegree = {task_id: 0 for task_id in down}
    for task_id, ups in edges.items():
        indegree[task_id] = len(set(ups))
    ready = [task_id for task_id, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        task_id = heapq.heappop(ready)
        order.append(task_id)
        for child in down[task_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(indegree):
        cycle = find_cycle(edges)
        raise CycleError(cycle or sorted(set(indegree) - set(order)))
    return order


def closures(edges: Edges) -> dict[str, frozenset[str]]:
    """Every task's transitive neighbours along ``edges`` (not including itself), all at once.

    Upstream edges give ancestors; ``downstream_map(edges)`` gives descendants. Memoized over the
    graph, so asking for every task costs one pass, not one walk per task.
    """
    memo: dict[str, frozenset[str]] = {}
    for node in edges:
        # Iterative DFS so a 10k-task chain does not hit the recursion limit.
        stack = [node]
        order: list[str] = []
        seen: set[str] = set()
        while stack:
            current = stack.pop()
            if current in seen or current in memo:
                continue
            seen.add(current)
            order.append(current)
            stack.extend(n for n in edges.get(current, ()) if n not in memo)
        for current in reversed(order):
            acc: set[str] = set()
            for n in edges.get(current, ()):
                acc.add(n)
                acc |= memo.get(n, frozenset())
            memo[current] = frozenset(acc)
    return memo


def roots(edges: Edges) -> list[str]:
    return sorted(task_id for task_id, ups in edges.items() if not list(ups))


def leaves(edges: Edges) -> list[str]:
    return sorted(task_id for task_id, children in downstream_map(edges).items() if not children)
