"""The API shows Vault-held connections and variables with their source, and never their values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from leoflow.domain.records import Connection, Variable
from tests.api.conftest import ApiHarness, make_harness
from tests.spec_validation import assert_spec
from tests.vault.conftest import OpenBao
from tests.vault.rig import server_login

SECRET = "vault-only-s3cr@t"


@pytest.fixture
def vapi(openbao: OpenBao, tmp_path: Path) -> Iterator[ApiHarness]:
    s = openbao.settings
    root = openbao.root()
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/api_pg", {
        "conn_type": "postgres", "host": "db", "login": "u", "password": SECRET, "description": "warehouse",
        "extra": {"sslmode": "require", "api_token": SECRET}}, mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/api_uri", {
        "conn_uri": f"mysql://me:{SECRET.replace('@', '%40')}@h:3306/app"}, mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.variables_path}/api_plain", {"value": SECRET},
                                               mount_point=s.kv_mount)
    login = server_login(openbao, tmp_path / "creds")
    harness = make_harness(tmp_path, openbao.config(tmp_path, role_id_file=login.role_id_file,
                                                    secret_id_file=login.secret_id_file, session_key_path=""))
    harness.repos.connections.create(Connection("api_pg", "http", host="store-host"))
    harness.repos.connections.create(Connection("api_store", "http", host="h", password="store-pw"))
    harness.repos.variables.create(Variable("api_store_var", "visible"))
    try:
        yield harness
    finally:
        harness.ctx.close()


def test_vault_records_are_marked_and_masked(vapi: ApiHarness, openbao: OpenBao) -> None:
    client = vapi.client("op")
    one = client.simulate_get("/api/v2/connections/api_pg")
    assert one.status_code == 200
    body = one.json
    assert body["description"] == f"[Vault: secret/{openbao.settings.connections_path}/api_pg] warehouse"
    assert body["host"] == "db" and body["password"] == "***"
    assert json.loads(body["extra"]) == {"sslmode": "require", "api_token": "***"}
    uri = client.simulate_get("/api/v2/connections/api_uri").json
    assert (uri["conn_type"], uri["host"], uri["login"], uri["password"]) == ("mysql", "h", "me", "***")
    listed = client.simulate_get("/api/v2/connections?limit=100").json
    by_id = {c["connection_id"]: c for c in listed["connections"]}
    assert by_id["api_pg"]["host"] == "db"  # Vault shadows the store record of the same id
    assert by_id["api_store"]["description"] is None and by_id["api_store"]["password"] == "***"
    var = client.simulate_get("/api/v2/variables/api_plain").json
    assert var["value"] == "***" and var["description"].startswith("[Vault: ")
    variables = {v["key"]: v for v in client.simulate_get("/api/v2/variables?limit=100").json["variables"]}
    assert variables["api_store_var"]["value"] == "visible" and variables["api_plain"]["value"] == "***"
    everything = json.dumps([body, uri, listed, var, variables])
    assert SECRET not in everything and SECRET.replace("@", "%40") not in everything


def test_writes_to_vault_held_ids_are_refused(vapi: ApiHarness) -> None:
    client = vapi.client("op")
    patched = client.simulate_patch("/api/v2/connections/api_pg", json={"connection_id": "api_pg",
                                                                        "conn_type": "http"})
    assert patched.status_code == 409
    assert "managed in Vault" in patched.json["detail"]
    assert client.simulate_delete("/api/v2/variables/api_plain").status_code == 409
    assert client.simulate_delete("/api/v2/connections/api_store").status_code == 204


def test_bulk_actions_refuse_vault_held_ids_per_item_and_do_the_rest(vapi: ApiHarness, openbao: OpenBao) -> None:
    """Airflow's bulk body: a Vault-held id is its action's own 409 error; the other entities proceed."""
    client = vapi.client("op")
    conns = "/api/v2/connections"
    out = client.simulate_patch(conns, json={"actions": [
        {"action": "create", "action_on_existence": "fail", "entities": [
            {"connection_id": "api_pg", "conn_type": "http", "host": "sneaky"},
            {"connection_id": "bulk_new", "conn_type": "http", "host": "fresh"}]},
        {"action": "update", "action_on_non_existence": "fail", "entities": [
            {"connection_id": "api_uri", "conn_type": "http", "host": "sneaky"},
            {"connection_id": "api_store", "conn_type": "http", "host": "moved"}]},
        {"action": "delete", "entities": ["api_pg"]},
    ]})
    body = assert_spec(out, "PATCH", conns)
    where = f"secret/{openbao.settings.connections_path}"
    assert body["create"] == {"success": ["bulk_new"], "errors": [{
        "error": f"connection `api_pg` is managed in Vault ({where}/api_pg) and is read-only here; change it there",
        "status_code": 409}]}
    assert body["update"]["success"] == ["api_store"]
    assert [e["status_code"] for e in body["update"]["errors"]] == [409]
    assert "`api_uri`" in body["update"]["errors"][0]["error"]
    assert body["delete"]["success"] == [] and "`api_pg`" in body["delete"]["errors"][0]["error"]
    repo = vapi.repos.connections
    assert repo.get("bulk_new").record.host == "fresh" and repo.get("api_store").record.host == "moved"
    assert repo.get("api_pg").record.host == "store-host"  # the shadowed store record: neither replaced nor deleted
    assert repo.get("api_uri") is None  # nothing stored for a Vault-held id

    variables = "/api/v2/variables"
    out = client.simulate_patch(variables, json={"actions": [
        {"action": "create", "action_on_existence": "overwrite", "entities": [
            {"key": "api_plain", "value": "replaced"}, {"key": "bulk_var", "value": "v"}]},
        {"action": "delete", "action_on_non_existence": "skip", "entities": ["api_plain", "api_store_var"]},
    ]})
    body = assert_spec(out, "PATCH", variables)
    assert body["create"]["success"] == ["bulk_var"] and body["delete"]["success"] == ["api_store_var"]
    for action in ("create", "delete"):
        (error,) = body[action]["errors"]
        assert error["status_code"] == 409 and error["error"].startswith("variable `api_plain` is managed in Vault")
    assert vapi.repos.variables.get("api_plain") is None and vapi.repos.variables.get("bulk_var") is not None
    shown = client.simulate_get(f"{variables}/api_plain").json
    assert shown["value"] == "***" and shown["description"].startswith("[Vault: ")
    assert SECRET not in json.dumps(body)
    # A single create of a Vault-held id is refused the same way.
    posted = client.simulate_post(conns, json={"connection_id": "api_uri", "conn_type": "http"})
    assert assert_spec(posted, "POST", conns)["status"] == 409 and repo.get("api_uri") is None
