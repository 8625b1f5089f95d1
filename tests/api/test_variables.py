"""Variables: CRUD, bulk (the UI's import), masking of sensitive keys exactly as Airflow decides."""

from __future__ import annotations

import json

import pytest

from leoflow.api.public import _secrets
from tests.api.runs_helpers import get_ok, problem_of
from tests.spec_validation import assert_spec

BASE = "/api/v2/variables"


@pytest.mark.parametrize(
    ("key", "hidden"),
    [
        ("db_password", True), ("MY-API-KEY", True), ("aws.secret", True), ("slack_webhook_url", True),
        ("service_account_json", True), ("Authorization", True), ("proxy", True), ("github_token", True),
        ("region", False), ("passport", False), ("tokenizer_name"[:5], True), ("host", False),
    ],
)
def test_masking_by_key_name_follows_airflow(key, hidden):
    assert _secrets.is_sensitive(key) is hidden


def test_crud_with_masked_values(api, client):
    created = client.simulate_post(BASE, json={"key": "db_password", "value": "hunter2", "description": "d"})
    assert created.status_code == 201 and assert_spec(created, "POST", BASE)["value"] == "***"
    plain = client.simulate_post(BASE, json={"key": "config", "value": {"url": "x", "password": "p", "n": 1}})
    body = assert_spec(plain, "POST", BASE)
    assert json.loads(body["value"]) == {"url": "x", "password": "***", "n": 1}
    assert json.loads(api.repos.variables.get("config").record.value)["password"] == "p"  # stored in full
    listed = get_ok(client, BASE + "?limit=50&offset=0&order_by=key")
    assert [v["key"] for v in listed["variables"]] == ["config", "db_password"]
    assert "hunter2" not in json.dumps(listed)
    filtered = get_ok(client, BASE + "?variable_key_pattern=PASS")
    assert [v["key"] for v in filtered["variables"]] == ["db_password"]
    # Editing the description with the masked value echoed back keeps the secret.
    patched = client.simulate_patch(BASE + "/db_password", json={"key": "db_password", "value": "***",
                                                                 "description": "new"})
    assert assert_spec(patched, "PATCH", BASE + "/db_password")["description"] == "new"
    assert api.repos.variables.get("db_password").record.value == "hunter2"
    client.simulate_patch(BASE + "/db_password?update_mask=value", json={"key": "db_password", "value": "x2"})
    assert api.repos.variables.get("db_password").record.value == "x2"
    problem_of(client.simulate_patch(BASE + "/config", json={"key": "other", "value": 1}), 400, "PATCH",
               BASE + "/config")
    problem_of(client.simulate_post(BASE, json={"key": "config", "value": 1}), 409, "POST", BASE)
    assert client.simulate_delete(BASE + "/config").status_code == 204
    problem_of(client.simulate_get(BASE + "/config"), 404, "GET", BASE + "/config")


def test_bulk_import_overwrite_and_skip(api, client):
    client.simulate_post(BASE, json={"key": "a", "value": "1"})
    out = client.simulate_patch(BASE, json={"actions": [
        {"action": "create", "action_on_existence": "overwrite",
         "entities": [{"key": "a", "value": "2"}, {"key": "b", "value": [1, 2]}]},
        {"action": "create", "action_on_existence": "skip", "entities": [{"key": "a", "value": "3"}]},
    ]})
    body = assert_spec(out, "PATCH", BASE)
    assert body["create"]["success"] == ["a", "b"]
    assert api.repos.variables.get("a").record.value == "2"
    assert json.loads(api.repos.variables.get("b").record.value) == [1, 2]
    failing = client.simulate_patch(BASE, json={"actions": [
        {"action": "create", "entities": [{"key": "a", "value": "9"}, {"key": "c", "value": "9"}]}]})
    body = assert_spec(failing, "PATCH", BASE)
    assert body["create"]["errors"][0]["status_code"] == 409
    assert api.repos.variables.get("c") is None  # a failing action writes none of its entities


@pytest.mark.parametrize("noun", ["variable", "connection"])
def test_shared_resource_keeps_each_nouns_messages_and_event_log(api, client, noun):
    """Variables and connections run on one generic resource; Airflow's texts and event names stay per noun."""
    base, ident, other = (("/api/v2/variables", "key", {"value": "1"}) if noun == "variable"
                          else ("/api/v2/connections", "connection_id", {"conn_type": "http"}))
    title = noun.capitalize()
    assert client.simulate_post(base, json={ident: "a", **other}).status_code == 201
    dup = problem_of(client.simulate_post(base, json={ident: "a", **other}), 409, "POST", base)
    assert dup["detail"] == ("Connection with connection_id: `a` already exists" if noun == "connection"
                             else "The Variable with key: `a` already exists")
    missing = problem_of(client.simulate_get(f"{base}/nope"), 404, "GET", f"{base}/nope")
    assert missing["detail"] == f"The {title} with {ident}: `nope` was not found"
    problem_of(client.simulate_delete(f"{base}/nope"), 404, "DELETE", f"{base}/nope")
    mismatch = problem_of(client.simulate_patch(f"{base}/a", json={ident: "b", **other}), 400, "PATCH", f"{base}/a")
    assert mismatch["field"] == f"body.{ident}"
    patched = client.simulate_patch(f"{base}/a?update_mask=description", json={ident: "a", **other,
                                                                                "description": "d"})
    assert assert_spec(patched, "PATCH", f"{base}/a")["description"] == "d"
    out = client.simulate_patch(base, json={"actions": [{"action": "create", "entities": [{ident: "b", **other}]}]})
    assert out.json["create"] == {"success": ["b"], "errors": []}
    assert client.simulate_delete(f"{base}/a").status_code == 204
    assert [v["key" if noun == "variable" else "connection_id"] for v in
            get_ok(client, f"{base}?{'variable_key' if noun == 'variable' else 'connection_id'}_pattern=b")[
                f"{noun}s"]] == ["b"]
    # One event per write (the harness clock stands still, so compare by name, not by order).
    events = {e.event: json.loads(e.extra or "{}") for e in api.repos.audit.list(limit=None).items}
    assert set(events) == {f"post_{noun}", f"patch_{noun}", f"bulk_{noun}s.create", f"delete_{noun}"}
    assert {name: extra[ident] for name, extra in events.items()} == {
        f"post_{noun}": "a", f"patch_{noun}": "a", f"bulk_{noun}s.create": "b", f"delete_{noun}": "a"}
    assert events[f"patch_{noun}"]["fields"] == ["description"]
