"""The API shows Vault-held connections and variables with their source, and never their values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from leoflow.domain.records import Connection, Variable
from tests.api.conftest import ApiHarness, make_harness
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
