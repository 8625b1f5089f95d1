"""Connections, variables and pools: set/get/list/delete and Airflow-format import/export, with
secrets hidden unless --show-secrets."""

from __future__ import annotations

import json

import yaml

from tests.cli.conftest import Cli


def test_connections_roundtrip_and_secrets(cli: Cli) -> None:
    r = cli("connections", "set", "cli_pg", "--conn-type", "postgres", "--host", "db", "--port", "5432",
            "--login", "etl", "--extra", '{"sslmode": "require"}', "--password-stdin", stdin="pg-s3cret\n")
    assert r.code == 0 and "created connection cli_pg" in r.out, r
    r = cli("connections", "set", "cli_pg", "--host", "db2")
    assert r.code == 0 and "updated" in r.out, r
    r = cli("connections", "get", "cli_pg")
    assert r.code == 0 and "pg-s3cret" not in r.out and "***" in r.out and "db2" in r.out, r
    listed = cli("connections", "list")
    assert "cli_pg" in listed.out and "pg-s3cret" not in listed.out
    # Secrets only when asked, read from the store (this machine holds the standalone's store).
    r = cli("connections", "get", "cli_pg", "--show-secrets", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["password"] == "pg-s3cret", r
    # Export in Airflow's format; without --show-secrets the password stays masked.
    out = cli.tmp / "conns.json"
    r = cli("connections", "export", str(out))
    assert r.code == 0 and "***" in r.err, r
    exported = json.loads(out.read_text())
    assert exported["cli_pg"] == {"conn_type": "postgres", "description": None, "extra": '{"sslmode": "require"}',
                                  "host": "db2", "login": "etl", "password": "***", "port": 5432, "schema": None}
    secret_out = cli.tmp / "conns-secret.yaml"
    r = cli("connections", "export", str(secret_out), "--show-secrets")
    assert r.code == 0 and secret_out.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(secret_out.read_text())["cli_pg"]["password"] == "pg-s3cret"
    # Import: a URI value, a mapping, and the masked password keeps the stored one.
    src = cli.tmp / "import.yaml"
    src.write_text(yaml.safe_dump({
        "cli_http": "http://user:pw@example.invalid:8081/base?timeout=3",
        "cli_pg": {"conn_type": "postgres", "host": "db3", "password": "***"},
    }))
    r = cli("connections", "import", str(src))
    assert r.code == 0 and "1 of 2 connection(s) imported; 1 skipped" in r.out, r
    r = cli("connections", "import", str(src), "--overwrite")
    assert r.code == 0 and "2 of 2" in r.out, r
    pg = json.loads(cli("connections", "get", "cli_pg", "--show-secrets", "-o", "json").out)
    assert pg["host"] == "db3" and pg["password"] == "pg-s3cret"
    web = json.loads(cli("connections", "get", "cli_http", "--show-secrets", "-o", "json").out)
    assert (web["conn_type"], web["host"], web["port"], web["login"], web["password"], web["schema"]) == \
        ("http", "example.invalid", 8081, "user", "pw", "base")
    assert json.loads(web["extra"]) == {"timeout": "3"}
    r = cli("connections", "delete", "cli_http", "cli_pg")
    assert r.code == 0, r
    r = cli("connections", "get", "cli_pg")
    assert r.code == 1 and "cli_pg" in r.err and "not found" in r.err


def test_connection_input_errors(cli: Cli) -> None:
    r = cli("connections", "set", "cli_new", "--host", "x")
    assert r.code == 2 and "--conn-type is required" in r.err, r
    r = cli("connections", "set", "cli_new", "--conn-type", "http", "--extra", "{oops")
    assert r.code == 2 and "--extra is not valid JSON" in r.err, r
    bad = cli.tmp / "bad.json"
    bad.write_text('{"a": {"conn_type": "http",}}')
    r = cli("connections", "import", str(bad))
    assert r.code == 1 and f"{bad}:1:" in r.err and "not valid JSON" in r.err, r
    r = cli("connections", "import", str(cli.tmp / "missing.json"))
    assert r.code == 1 and "no such file" in r.err
    r = cli("connections", "export", str(cli.tmp / "conns.txt"))
    assert r.code == 2 and "unknown file type" in r.err


def test_variables_roundtrip_and_masking(cli: Cli) -> None:
    assert cli("variables", "set", "cli_region", "eu-west-1", "--description", "where").code == 0
    assert cli("variables", "set", "cli_api_token", "--value-stdin", stdin="tok-123\n").code == 0
    assert cli("variables", "set", "cli_cfg", '{"a": [1, 2]}', "--json").code == 0
    r = cli("variables", "set", "cli_bad", "{a", "--json")
    assert r.code == 2 and "not valid JSON" in r.err
    assert cli("variables", "get", "cli_region").out == "eu-west-1\n"
    assert cli("variables", "get", "cli_api_token").out == "***\n"
    assert cli("variables", "get", "cli_api_token", "--show-secrets").out == "tok-123\n"
    assert cli("variables", "get", "cli_missing", "--default", "fallback").out == "fallback\n"
    r = cli("variables", "get", "cli_missing")
    assert r.code == 1 and "does not exist" in r.err
    r = cli("variables", "export", "-")
    exported = json.loads(r.out)
    assert exported["cli_region"] == {"value": "eu-west-1", "description": "where"}
    assert exported["cli_cfg"] == {"a": [1, 2]} and exported["cli_api_token"] == "***"
    # Import: the masked value is skipped, never written over the real one.
    src = cli.tmp / "vars.yaml"
    src.write_text(yaml.safe_dump({"cli_api_token": "***", "cli_region": "us-east-1", "cli_new": {"value": 7}}))
    r = cli("variables", "import", str(src))
    assert r.code == 0 and "2 of 3 variable(s) imported; 1 skipped" in r.out and "cli_api_token" in r.err, r
    assert cli("variables", "get", "cli_api_token", "--show-secrets").out == "tok-123\n"
    assert cli("variables", "get", "cli_region").out == "us-east-1\n"
    assert cli("variables", "get", "cli_new").out == "7\n"
    r = cli("variables", "import", str(src), "--action-on-existing-key", "fail")
    assert r.code == 1 and "already exist" in r.err, r
    assert cli("variables", "delete", "cli_region", "cli_api_token", "cli_cfg", "cli_new").code == 0


def test_pools_roundtrip(cli: Cli) -> None:
    r = cli("pools", "set", "cli_pool", "3", "--description", "for the cli test")
    assert r.code == 0 and "created pool cli_pool (3 slots)" in r.out, r
    assert cli("pools", "set", "cli_pool", "5").code == 0
    pool = json.loads(cli("pools", "get", "cli_pool", "-o", "json").out)
    assert pool["slots"] == 5 and pool["description"] == "for the cli test" and pool["open_slots"] == 5
    r = cli("pools", "list")
    assert r.out.splitlines()[0].split()[:3] == ["POOL", "SLOTS", "OCCUPIED"] and "cli_pool" in r.out
    out = cli.tmp / "pools.json"
    assert cli("pools", "export", str(out)).code == 0
    exported = json.loads(out.read_text())
    assert exported["cli_pool"] == {"slots": 5, "description": "for the cli test", "include_deferred": False}
    assert "default_pool" in exported
    exported["cli_pool"]["slots"] = 9
    exported["cli_pool2"] = {"slots": 1, "description": "second"}
    out.write_text(json.dumps(exported))
    r = cli("pools", "import", str(out))
    assert r.code == 0 and f"{len(exported)} of {len(exported)} pool(s) imported" in r.out, r
    assert json.loads(cli("pools", "get", "cli_pool", "-o", "json").out)["slots"] == 9
    assert cli("pools", "delete", "cli_pool", "cli_pool2").code == 0
    r = cli("pools", "set", "cli_pool", "-5")
    assert r.code == 2
