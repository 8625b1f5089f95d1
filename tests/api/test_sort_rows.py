"""``dto.sort_rows`` orders exactly as the ``_Key`` comparison it replaced on the hot path."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from leoflow.api import dto


def _reference(rows: list[Any], orders: list[dto.Order], keys: dict[str, Any]) -> list[Any]:
    out = list(rows)
    for order in reversed(orders):
        fn = keys[order.field]
        out.sort(key=lambda row, fn=fn: dto._Key(fn(row)), reverse=order.descending)
    return out


def test_same_order_as_key_wrapper_with_nulls_ties_and_mixed_types() -> None:
    rnd = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"n": i, "when": rnd.choice([None, t0 + timedelta(hours=rnd.randrange(5))]),
         "state": rnd.choice([None, "failed", "success"]), "mixed": rnd.choice([None, 1, "a", 2.5])}
        for i in range(300)
    ]
    keys = {name: (lambda r, name=name: r[name]) for name in ("n", "when", "state", "mixed")}
    for spec in (["when", "n"], ["-when", "n"], ["state", "-when", "-n"], ["-mixed", "n"], ["mixed", "-n"]):
        orders = [dto.Order(s.lstrip("-"), s.startswith("-")) for s in spec]
        got = dto.sort_rows(rows, orders, keys)
        assert [r["n"] for r in got] == [r["n"] for r in _reference(rows, orders, keys)], spec
    ascending = dto.sort_rows(rows, [dto.Order("when", False), dto.Order("n", False)], keys)
    assert ascending[-1]["when"] is None and ascending[0]["when"] == t0  # nulls last ascending
    descending = dto.sort_rows(rows, [dto.Order("when", True), dto.Order("n", False)], keys)
    assert descending[0]["when"] is None  # and first descending
    assert dto.sort_rows([], [dto.Order("n", False)], keys) == []
