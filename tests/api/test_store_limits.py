"""Client data the store cannot hold: a clear 4xx naming the field, nothing stored, no traceback.

The body limit (``[server] max_body_bytes``, 1 MiB) is larger than what one store record holds
(512 KiB per value, 360 KiB per transaction), so a body can pass the size check and still be
refused by the store. Ids that cannot be store keys (empty path segments) name nothing: 404.
"""

from __future__ import annotations

import json
import logging

import pytest

from leoflow.api import problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies
from leoflow.domain.records import Connection, Pool, Variable
from leoflow.store.port import ValueTooLarge
from leoflow.store.repos.base import TIKey
from tests.api.runs_helpers import problem_of

BIG = "x" * 700_000  # under the 1 MiB body limit, over every store limit
RUN = "/api/v2/dags/etl/dagRuns"

OVERSIZED = [
    ("POST", "/api/v2/variables", {"key": "v", "value": BIG}, "body.value"),
    ("POST", "/api/v2/variables", {"key": "v", "value": {"nested": BIG}}, "body.value"),
    ("PATCH", "/api/v2/variables/v0", {"key": "v0", "value": BIG}, "body.value"),
    ("POST", "/api/v2/connections", {"connection_id": "c", "conn_type": "http",
                                     "extra": json.dumps({"blob": BIG})}, "body.extra"),
    ("POST", "/api/v2/connections", {"connection_id": "c", "conn_type": "http", "password": BIG}, "body.password"),
    ("PATCH", "/api/v2/connections/c0", {"connection_id": "c0", "conn_type": "http", "password": BIG},
     "body.password"),
    ("POST", "/api/v2/pools", {"name": "p", "slots": 1, "description": BIG}, "body.description"),
    ("PATCH", "/api/v2/pools/p0", {"description": BIG}, "body.description"),
    ("POST", RUN, {"logical_date": None, "conf": {"blob": BIG}}, "body.conf"),
    ("POST", RUN, {"logical_date": None, "note": BIG}, "body.note"),
    ("POST", RUN + "/r/taskInstances/a/xcomEntries", {"key": "k", "value": BIG}, "body.value"),
    ("PATCH", RUN + "/r/taskInstances/a/xcomEntries/k0", {"value": BIG}, "body.value"),
    ("PATCH", "/api/v2/pools", {"actions": [{"action": "create", "entities": [
        {"name": "p1", "slots": 1, "description": BIG}]}]}, None),
]


@pytest.fixture
def seeded(api):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    api.repos.connections.create(Connection("c0", "http"))
    api.repos.variables.create(Variable("v0", "x"))
    api.repos.pools.create(Pool("p0", 2))
    api.repos.pools.ensure_default()  # any pools request creates it; not a write of the request under test
    api.repos.xcom.set(TIKey("etl", "r", "a"), "k0", 1, try_number=1, timestamp=api.clock())
    return api


def _snapshot(api) -> str:
    entries = api.ctx.store.list("leoflow/")
    return json.dumps(sorted((e.key, e.value.hex(), e.modify_index) for e in entries if "/audit/" not in e.key))


@pytest.mark.parametrize(("method", "path", "body", "field"), OVERSIZED,
                         ids=[f"{m} {p} {f or 'bulk'}" for m, p, _, f in OVERSIZED])
def test_a_value_too_large_for_the_store_is_a_413_naming_the_field(seeded, client, caplog, method, path, body,
                                                                     field):
    before = _snapshot(seeded)
    with caplog.at_level(logging.ERROR, logger="leoflow.api.problem"):
        result = client.simulate_request(method, path, json=body)
    if field is None:  # a bulk body: the action reports the entity, the request succeeds
        assert result.status_code == 200, result.text
        error = result.json["create"]["errors"][0]
        assert error["status_code"] == 413 and error["error"].startswith("body.actions.0.entities.0.description")
    else:
        doc = problem_of(result, 413, method, path)
        assert doc["field"] == field and doc["detail"].startswith(field)
    assert _snapshot(seeded) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no "unhandled error" traceback


def test_bulk_reports_the_oversized_entity_and_keeps_the_ones_written_before(seeded, client):
    out = client.simulate_patch("/api/v2/variables", json={"actions": [
        {"action": "create", "entities": [{"key": "ok", "value": "1"}, {"key": "big", "value": BIG}]},
    ]})
    assert out.status_code == 200, out.text
    create = out.json["create"]
    assert create["success"] == ["ok"]
    assert create["errors"][0]["status_code"] == 413
    assert create["errors"][0]["error"].startswith("body.actions.0.entities.1.value is too large")
    out = client.simulate_patch("/api/v2/variables", json={"actions": [
        {"action": "delete", "entities": ["ghost"], "action_on_non_existence": "skip"},
        {"action": "update", "entities": [{"key": "v0", "value": BIG}]},
    ]})
    update = out.json["update"]
    assert update["success"] == [] and update["errors"][0]["status_code"] == 413
    assert update["errors"][0]["error"].startswith("body.actions.1.entities.0.value is too large")
    assert seeded.repos.variables.get("big") is None and seeded.repos.variables.get("v0").record.value == "x"
    assert seeded.repos.variables.get("ok") is not None


EMPTY_IDS = [
    "/api/v2/dags/etl/dagRuns//taskInstances/a",
    "/api/v2/dags/etl/dagRuns//taskInstances",
    "/api/v2/dags/etl/dagRuns//taskInstances/a/-1",
    "/api/v2/dags/etl/dagRuns//taskInstances/a/tries",
    "/api/v2/dags/etl/dagRuns//taskInstances/a/logs/1",
    "/api/v2/dags/etl/dagRuns//taskInstances/a/xcomEntries",
    "/api/v2/dags/etl/dagRuns//taskInstances/a/xcomEntries/k",
    "/api/v2/dags/etl/dagRuns/r/taskInstances//logs/1",
    "/api/v2/dags/etl/dagRuns/",
    "/api/v2/variables/",
    "/api/v2/connections/",
    "/api/v2/pools/",
]


def _template(path: str) -> str:
    """A concrete path the spec can match (an empty segment matches no template there either)."""
    filled = path.replace("//", "/x/")
    return filled + "x" if filled.endswith("/") else filled


@pytest.mark.parametrize("path", EMPTY_IDS)
def test_an_empty_path_id_is_404_as_in_airflow(seeded, client, path):
    doc = problem_of(client.simulate_get(path), 404, "GET", _template(path))
    assert doc["field"].startswith("path.") and "is empty" in doc["detail"]


def test_a_path_id_too_long_to_be_a_store_key_is_404(seeded, client):
    path = "/api/v2/variables/" + "é" * 400  # 2,400 bytes once encoded: no record can have this key
    doc = problem_of(client.simulate_get(path), 404, "GET", path)
    assert "too long or malformed" in doc["detail"] and "leoflow/" not in doc["detail"]


def test_empty_path_id_on_a_write_is_404_and_changes_nothing(seeded, client):
    before = _snapshot(seeded)
    path = "/api/v2/dags/etl/dagRuns//taskInstances/a"
    problem_of(client.simulate_patch(path, json={"note": "n"}), 404, "PATCH", _template(path))
    problem_of(client.simulate_delete("/api/v2/variables/"), 404, "DELETE", "/api/v2/variables/x")
    assert _snapshot(seeded) == before


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v2/variables", {"key": "", "value": "1"}, "body.key"),
    ("/api/v2/pools", {"name": "", "slots": 1}, "body.name"),
    (RUN + "/r/taskInstances/a/xcomEntries", {"key": "", "value": 1}, "body.key"),
])
def test_an_empty_id_in_a_body_is_a_422_naming_it(seeded, client, path, body, field):
    before = _snapshot(seeded)
    assert problem_of(client.simulate_post(path, json=body), 422, "POST", path)["field"] == field
    assert _snapshot(seeded) == before


def test_an_id_too_long_for_a_store_key_is_a_400_without_internal_keys(seeded, client):
    path = RUN + "/r/taskInstances/a/xcomEntries"
    before = _snapshot(seeded)
    doc = problem_of(client.simulate_post(path, json={"key": "é" * 600, "value": 1}), 400, "POST", path)
    assert "1024 bytes" in doc["detail"] and "leoflow/" not in doc["detail"]
    assert _snapshot(seeded) == before


def test_largest_field_descends_through_bulk_records_but_not_into_free_form_values():
    assert problem.largest_field({"key": "k", "value": {"a": "x" * 50, "b": 1}}) == ("body.value", 64)
    doc = {"actions": [{"action": "create", "entities": [{"key": "a", "value": "1"}, {"key": "b", "value": "x" * 99}]}]}
    assert problem.largest_field(doc)[0] == "body.actions.0.entities.1.value"
    assert problem.largest_field({"conf": {"deep": {"deeper": "x" * 10}}, "note": "n"})[0] == "body.conf"


class _Overflow:
    """A route whose own record outgrows the store whatever the (small) body says."""

    roles = {"POST": Role.OP}

    def on_post(self, req, resp):
        _bodies.read(req)
        raise ValueTooLarge("value for key 'leoflow/runs/x' is 600000 bytes, over the 524288 byte limit")


def test_a_record_the_server_outgrew_is_a_500_with_a_correlation_id_not_a_blamed_field(seeded, client, caplog):
    """A small body cannot be why a record passed the limit: no field is blamed, the bug is logged."""
    seeded.app.add_route("/api/v2/test-only/overflow", _Overflow())
    with caplog.at_level(logging.ERROR, logger="leoflow.api.problem"):
        result = client.simulate_post("/api/v2/test-only/overflow", json={"dry_run": False})
    assert result.status_code == 500 and "correlation id" in result.json["detail"]
    assert "field" not in result.json and "leoflow/runs" not in result.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)
