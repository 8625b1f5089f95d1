"""Pools: CRUD, bulk, slot counters from real task-instance states, default_pool rules."""

from __future__ import annotations

import dataclasses

from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import get_ok, problem_of
from tests.spec_validation import assert_spec

BASE = "/api/v2/pools"


def test_default_pool_exists_and_counts_come_from_task_states(api, client):
    api.seed_dag("etl", tasks=("a", "b", "c", "d"))
    api.seed_run("etl", "r", state="running",
                 ti_states={"a": "running", "b": "queued", "c": "scheduled", "d": "deferred"})
    repo = api.repos.task_instances
    cur = repo.get(TIKey("etl", "r", "b"))
    repo.transition(cur, dataclasses.replace(cur.record, pool_slots=2))
    body = get_ok(client, BASE)
    (pool,) = body["pools"]
    assert pool["name"] == "default_pool" and pool["slots"] == 128
    assert (pool["running_slots"], pool["queued_slots"], pool["scheduled_slots"], pool["deferred_slots"]) == (
        1, 2, 1, 1)
    assert pool["occupied_slots"] == 3 and pool["open_slots"] == 125
    # include_deferred counts deferred tasks as occupying.
    client.simulate_patch(BASE + "/default_pool?update_mask=include_deferred", json={"include_deferred": True})
    pool = get_ok(client, BASE + "/default_pool")
    assert pool["occupied_slots"] == 4 and pool["open_slots"] == 124
    problem_of(client.simulate_delete(BASE + "/default_pool"), 400, "DELETE", BASE + "/default_pool")
    problem_of(client.simulate_patch(BASE + "/default_pool", json={"description": "x"}), 400, "PATCH",
               BASE + "/default_pool")


def test_crud_bulk_and_unlimited_pool(api, client):
    created = client.simulate_post(BASE, json={"name": "gpu", "slots": 2, "description": "GPUs"})
    assert created.status_code == 201
    assert assert_spec(created, "POST", BASE)["open_slots"] == 2
    problem_of(client.simulate_post(BASE, json={"name": "gpu", "slots": 1}), 409, "POST", BASE)
    unlimited = client.simulate_post(BASE, json={"name": "any", "slots": -1})
    assert unlimited.json["open_slots"] == -1
    patched = client.simulate_patch(BASE + "/gpu", json={"slots": 4})
    assert assert_spec(patched, "PATCH", BASE + "/gpu")["slots"] == 4
    problem_of(client.simulate_patch(BASE + "/gpu", json={"pool": "cpu"}), 400, "PATCH", BASE + "/gpu")
    listed = get_ok(client, BASE + "?limit=10&offset=0&order_by=name&pool_name_pattern=g")
    assert [p["name"] for p in listed["pools"]] == ["gpu"]
    out = client.simulate_patch(BASE, json={"actions": [
        {"action": "update", "entities": [{"name": "gpu", "slots": 8}]},
        {"action": "delete", "entities": ["any", "default_pool"]},
    ]})
    body = assert_spec(out, "PATCH", BASE)
    assert body["update"]["success"] == ["gpu"] and api.repos.pools.get("gpu").record.slots == 8
    assert body["delete"]["success"] == ["any"] and body["delete"]["errors"][0]["status_code"] == 400
    assert api.repos.pools.get("default_pool") is not None
    assert client.simulate_delete(BASE + "/gpu").status_code == 204
    problem_of(client.simulate_get(BASE + "/gpu"), 404, "GET", BASE + "/gpu")
