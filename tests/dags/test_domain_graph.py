import pytest

from leoflow.domain.dag import DAG, Task
from leoflow.domain.graph import (
    CycleError,
    closures,
    downstream_map,
    edges_of,
    find_cycle,
    leaves,
    roots,
    topological_order,
)

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_topological_order_is_deterministic() -> None:
    assert topological_order(DIAMOND) == ["a", "b", "c", "d", "e"]
    assert topological_order({"z": [], "y": ["z"], "x": []}) == ["x", "z", "y"]


def test_neighbourhoods() -> None:
    assert downstream_map(DIAMOND) == {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set(), "e": set()}
    assert closures(DIAMOND)["d"] == {"a", "b", "c"}
    assert closures(downstream_map(DIAMOND))["a"] == {"b", "c", "d"}
    assert closures(downstream_map(DIAMOND))["d"] == set()
    assert roots(DIAMOND) == ["a", "e"]
    assert leaves(DIAMOND) == ["d", "e"]


def test_cycle_is_named() -> None:
    edges = {"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]}
    assert find_cycle(edges) == ["b", "c", "d", "b"]
    with pytest.raises(CycleError) as err:
        topological_order(edges)
    assert str(err.value) == "cycle in task dependencies: b -> c -> d -> b"
    assert err.value.cycle == ["b", "c", "d", "b"]


def test_self_loop_and_acyclic() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle(DIAMOND) is None


def test_long_chain_has_no_recursion_limit() -> None:
    edges = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert topological_order(edges)[-1] == "t4999"
    edges["t0"] = ["t4999"]
    assert len(find_cycle(edges) or []) == 5001


def test_edges_of_dag() -> None:
    dag = DAG("d", {"a": Task("a"), "b": Task("b", upstream=frozenset({"a"}))})
    assert topological_order(edges_of(dag)) == ["a", "b"]
