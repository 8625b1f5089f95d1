"""Connections: CRUD, bulk, test; secrets never come back."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from tests.api.runs_helpers import get_ok, problem_of
from tests.spec_validation import assert_spec

BASE = "/api/v2/connections"


def _create(client, **kw):
    body = {"connection_id": "pg", "conn_type": "postgres", "host": "db", "login": "app", "password": "s3cret",
            "port": 5432, "extra": json.dumps({"sslmode": "require", "api_key": "k", "nested": {"token": "t"}})}
    body.update(kw)
    return client.simulate_post(BASE, json=body)


def test_crud_masks_password_and_sensitive_extras(api, client):
    created = _create(client)
    assert created.status_code == 201
    body = assert_spec(created, "POST", BASE)
    assert body["password"] == "***"
    assert json.loads(body["extra"]) == {"sslmode": "require", "api_key": "***", "nested": {"token": "***"}}
    assert "s3cret" not in created.text
    listed = get_ok(client, BASE + "?limit=10&offset=0&order_by=connection_id")
    assert listed["total_entries"] == 1 and "s3cret" not in json.dumps(listed)
    one = get_ok(client, BASE + "/pg")
    assert one["host"] == "db"
    # Echoing the masked password back keeps the stored one (the UI's edit form does exactly this).
    patched = client.simulate_patch(BASE + "/pg", json={**one, "host": "db2"})
    assert assert_spec(patched, "PATCH", BASE + "/pg")["host"] == "db2"
    stored = api.repos.connections.get("pg").record
    assert stored.password == "s3cret" and json.loads(stored.extra)["api_key"] == "k"
    # update_mask narrows the change.
    client.simulate_patch(BASE + "/pg?update_mask=login", json={"connection_id": "pg", "conn_type": "x",
                                                                "login": "other"})
    stored = api.repos.connections.get("pg").record
    assert stored.login == "other" and stored.conn_type == "postgres"
    problem_of(client.simulate_patch(BASE + "/pg", json={"connection_id": "zz", "conn_type": "x"}), 400, "PATCH",
               BASE + "/pg")
    problem_of(_create(client), 409, "POST", BASE)
    assert client.simulate_delete(BASE + "/pg").status_code == 204
    problem_of(client.simulate_get(BASE + "/pg"), 404, "GET", BASE + "/pg")
    events = [e.event for e in api.repos.audit.list(limit=None).items]
    assert {"post_connection", "patch_connection", "delete_connection"} <= set(events)
    assert not any("s3cret" in (e.extra or "") for e in api.repos.audit.list(limit=None).items)


def test_extra_must_be_a_json_object(api, client):
    bad = _create(client, extra="not json")
    assert problem_of(bad, 422, "POST", BASE)["field"] == "body.extra"
    assert api.repos.connections.get("pg") is None


def test_bulk_create_update_delete(api, client):
    _create(client)
    out = client.simulate_patch(BASE, json={"actions": [
        {"action": "create", "entities": [{"connection_id": "pg", "conn_type": "postgres"}],
         "action_on_existence": "fail"},
        {"action": "update", "entities": [{"connection_id": "pg", "conn_type": "postgres", "host": "h"}],
         "update_mask": ["host"]},
        {"action": "delete", "entities": ["ghost"], "action_on_non_existence": "skip"},
    ]})
    body = assert_spec(out, "PATCH", BASE)
    assert body["create"]["errors"][0]["status_code"] == 409
    assert body["update"]["success"] == ["pg"] and body["delete"] == {"success": [], "errors": []}
    assert api.repos.connections.get("pg").record.host == "h"


def test_connection_test_is_refused_unless_enabled(api, client):
    """Default "Disabled" (and "Hidden"): Airflow's 403, and no socket is opened to the named host."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    try:
        for setting in ("Disabled", "Hidden", "enabled-ish"):
            api.ctx.config.ui.test_connection = setting
            denied = client.simulate_post(BASE + "/test", json={"connection_id": "t", "conn_type": "http",
                                                                "host": "127.0.0.1", "port": port})
            body = problem_of(denied, 403, "POST", BASE + "/test")
            assert body["detail"] == ("Testing connections is disabled in Airflow configuration. "
                                      "Contact your deployment admin to enable it.")
            with pytest.raises(TimeoutError):
                listener.accept()  # nobody connected: the probe never ran
            assert get_ok(client, "/ui/config")["test_connection"] in ("Disabled", "Hidden")  # no Test button
    finally:
        listener.close()


def test_connection_test_reports_real_reachability(api, client):
    api.ctx.config.ui.test_connection = " ENABLED "  # Airflow compares case-insensitively, stripped
    assert get_ok(client, "/ui/config")["test_connection"] == "Enabled"  # the UI compares exactly
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    accepted.start()
    try:
        ok = client.simulate_post(BASE + "/test", json={"connection_id": "t", "conn_type": "http",
                                                        "host": "127.0.0.1", "port": port})
        body = assert_spec(ok, "POST", BASE + "/test")
        assert body["status"] is True and "reachability only" in body["message"]
    finally:
        accepted.join(timeout=5)
        server.close()
    closed = client.simulate_post(BASE + "/test", json={"connection_id": "t", "conn_type": "http",
                                                        "host": "127.0.0.1", "port": port})
    assert closed.json["status"] is False and "could not open" in closed.json["message"]
    nohost = client.simulate_post(BASE + "/test", json={"connection_id": "t", "conn_type": "aws"})
    assert nohost.json["status"] is False
