"""Connections and variables from Vault KV v2 (Airflow's layout) with the store as fallback."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from leoflow.domain.records import Connection, Variable
from leoflow.executors.port import TryKey, TryRequest
from leoflow.secrets.airflow import connection_uri, env_name
from leoflow.secrets.backend import SecretMissing, SecretsBackend, SecretsUnavailable, VaultKv
from leoflow.secrets.delivery import TaskSecrets
from leoflow.secrets.login import VaultSession
from leoflow.secrets.masking import Masker
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository
from leoflow.store.sqlite import SqliteStore
from tests.vault.conftest import OpenBao
from tests.vault.rig import provision, server_session

NASTY = "p@ss:w/rd?#&=% +é"


def _airflow_parse(uri: str) -> dict[str, object]:
    """What Airflow's Connection._parse_from_uri recovers (its urlsplit + unquote rules)."""
    parts = urlsplit(uri)
    return {"conn_type": parts.scheme.replace("-", "_"), "host": unquote(parts.hostname or ""),
            "login": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "schema": unquote(parts.path[1:]), "port": parts.port}


def test_uri_is_airflows_and_survives_uri_reserved_characters() -> None:
    conn = Connection("pg", "postgres", host="db.example.com", login="us@r", password=NASTY, schema="my/db",
                      port=5432)
    uri = connection_uri(conn)
    assert uri == ("postgres://us%40r:p%40ss%3Aw%2Frd%3F%23%26%3D%25%20%2B%C3%A9@db.example.com:5432/my%2Fdb")
    assert _airflow_parse(uri) == {"conn_type": "postgres", "host": "db.example.com", "login": "us@r",
                                   "password": NASTY, "schema": "my/db", "port": 5432}


@pytest.mark.parametrize(("conn", "expected"), [
    (Connection("a", "google_cloud_platform"), "google-cloud-platform://"),
    (Connection("a", "http", host="https://api.example.com"), "http://https://api.example.com"),
    (Connection("a", "postgres", host="h", schema="s", extra='{"sslmode": "require"}'),
     "postgres://h/s?sslmode=require"),
    (Connection("a", "postgres", host="h", extra='{"sslmode": "require"}'), "postgres://h/?sslmode=require"),
    (Connection("a", "aws", extra='{"nested": {"k": 1}}'),
     "aws:///?__extra__=%7B%22nested%22%3A+%7B%22k%22%3A+1%7D%7D"),
    (Connection("a", "redis", port=6379), "redis://@:6379"),
])
def test_uri_edge_cases_follow_airflow(conn: Connection, expected: str) -> None:
    assert connection_uri(conn) == expected


def test_env_names_are_airflows() -> None:
    assert env_name("CONN", "my-db.prod") == "AIRFLOW_CONN_MY_DB_PROD"
    assert env_name("VAR", "api_key") == "AIRFLOW_VAR_API_KEY"


def test_masker_hides_raw_encoded_and_uri_forms_but_not_short_values() -> None:
    uri = "postgres://u:" + "p%40ss%3Aw" + "@h/db"
    masker = Masker(["p@ss:w", uri, "abc"])
    assert masker.mask(f"connecting to {uri} with p@ss:w and p%40ss%3Aw") == "connecting to *** with *** and ***"
    assert masker.mask("abc stays") == "abc stays"
    assert Masker().mask("nothing to hide") == "nothing to hide"


def test_masker_hides_json_escaped_forms_as_python_and_go_write_them() -> None:
    """A Nomad task gets a fields connection as Airflow's JSON form, encoded by Go (``&`` -> ``\\u0026``)."""
    secret = "p&ss<é>\"x"
    masker = Masker([secret])
    go_form = 'p\\u0026ss\\u003cé\\u003e\\"x'
    for text in (json.dumps({"password": secret}), json.dumps({"password": secret}, ensure_ascii=False),
                 '{"password":"' + go_form + '"}'):
        assert masker.mask(text).replace(" ", "") == '{"password":"***"}', text


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "s.db")
    yield s  # type: ignore[misc]
    s.close()


def _backend(openbao: OpenBao, store: SqliteStore, session: VaultSession | None) -> SecretsBackend:
    ks = Keyspace("leoflow")
    vault = None
    if session is not None:
        s = openbao.settings
        vault = VaultKv(session.client, mount=s.kv_mount, connections_path=s.connections_path,
                        variables_path=s.variables_path)
    return SecretsBackend(ConnectionRepository(store, ks), VariableRepository(store, ks), vault)


def _put(openbao: OpenBao, path: str, value: dict[str, object]) -> None:
    openbao.root().secrets.kv.v2.create_or_update_secret(path, value, mount_point=openbao.settings.kv_mount)


def test_vault_first_then_store_and_the_source_is_named(openbao: OpenBao, store: SqliteStore, tmp_path: Path) -> None:
    s = openbao.settings
    _put(openbao, f"{s.connections_path}/be_pg", {"conn_type": "postgres", "host": "vault-db", "login": "v",
                                                   "password": NASTY, "port": "5432",
                                                   "extra": {"sslmode": "require", "api_token": "tok-secret-1"}})
    _put(openbao, f"{s.connections_path}/be_uri", {"conn_uri": "mysql://a:b%40c@h:3306/x"})
    _put(openbao, f"{s.variables_path}/be_var", {"value": "from-vault"})
    _put(openbao, f"{s.variables_path}/be_json", {"value": {"a": 1}})
    backend = _backend(openbao, store, server_session(openbao, tmp_path))
    ks = Keyspace("leoflow")
    ConnectionRepository(store, ks).create(Connection("be_pg", "postgres", host="store-db"))
    ConnectionRepository(store, ks).create(Connection("be_store_only", "http", host="h", password="store-pass"))
    VariableRepository(store, ks).create(Variable("be_var", "from-store"))
    VariableRepository(store, ks).create(Variable("be_db_password", "store-secret-value"))
    VariableRepository(store, ks).create(Variable("be_plain", "visible"))

    pg = backend.connection("be_pg")
    assert pg is not None and pg.source == f"vault:{s.kv_mount}/{s.connections_path}/be_pg"
    assert pg.connection is not None and pg.connection.host == "vault-db" and pg.connection.port == 5432
    assert NASTY in pg.secrets and "tok-secret-1" in pg.secrets and pg.uri in pg.secrets
    uri = backend.connection("be_uri")
    assert uri is not None and uri.uri == "mysql://a:b%40c@h:3306/x" and uri.connection is None
    only = backend.connection("be_store_only")
    assert only is not None and only.source == "store" and "store-pass" in only.secrets
    assert backend.connection("be_nowhere") is None

    var = backend.variable("be_var")
    assert var is not None and var.value == "from-vault" and var.secrets == ("from-vault",)
    json_var = backend.variable("be_json")
    assert json_var is not None and json.loads(json_var.value) == {"a": 1}
    sensitive = backend.variable("be_db_password")
    assert sensitive is not None and sensitive.source == "store" and sensitive.secrets == ("store-secret-value",)
    plain = backend.variable("be_plain")
    assert plain is not None and plain.secrets == ()
    assert "be_pg" in backend.vault.list_ids("connection")  # type: ignore[union-attr]
    assert "be_var" in backend.vault.list_ids("variable")  # type: ignore[union-attr]


def test_vault_refusing_us_is_unavailable_not_a_silent_fallback(openbao: OpenBao, store: SqliteStore,
                                                                tmp_path: Path) -> None:
    # An agent's token has no read on the KV paths: the backend must not quietly use the store instead.
    ks = Keyspace("leoflow")
    ConnectionRepository(store, ks).create(Connection("be_denied", "http", host="store"))
    backend = _backend(openbao, store, VaultSession(provision(openbao, "kv-denied", ["default"], tmp_path)))
    with pytest.raises(SecretsUnavailable, match="Vault refused the request"):
        backend.connection("be_denied")


def test_task_gets_only_what_it_declares_and_a_missing_one_is_named(openbao: OpenBao, store: SqliteStore,
                                                                   tmp_path: Path) -> None:
    s = openbao.settings
    _put(openbao, f"{s.connections_path}/decl_a", {"conn_uri": "http://u:secret-a-1@h"})
    _put(openbao, f"{s.connections_path}/decl_b", {"conn_uri": "http://u:secret-b-2@h"})
    secrets = TaskSecrets(_backend(openbao, store, server_session(openbao, tmp_path)))
    key = TryKey("d", "r", "t", -1, 1)
    env = secrets.env_for(TryRequest(key, ("true",), env={"AIRFLOW_CONN_DECL_B": "smuggled", "OTHER": "1"},
                                     connections=("decl_a",)))
    assert env == {"AIRFLOW_CONN_DECL_A": "http://u:secret-a-1@h", "OTHER": "1"}
    assert secrets.mask(key, "using http://u:secret-a-1@h", lambda: None) == "using ***"
    with pytest.raises(SecretMissing, match=r"connection 'decl_zzz' is declared by the task but was found in neither "
                                            r"Vault \(secret/leoflow/connections/decl_zzz\) nor the store"):
        secrets.env_for(TryRequest(TryKey("d", "r", "t2", -1, 1), ("true",), connections=("decl_zzz",)))


def test_masker_is_rebuilt_from_the_request_after_a_restart(openbao: OpenBao, store: SqliteStore,
                                                           tmp_path: Path) -> None:
    s = openbao.settings
    _put(openbao, f"{s.variables_path}/restart_token", {"value": "tok-after-restart"})
    secrets = TaskSecrets(_backend(openbao, store, server_session(openbao, tmp_path)))
    key = TryKey("d", "r", "t", -1, 1)
    request = TryRequest(key, ("true",), variables=("restart_token",))
    assert secrets.mask(key, "value tok-after-restart", lambda: request) == "value ***"


def test_api_view_names_the_source_and_hides_values() -> None:
    from leoflow.secrets.backend import ResolvedConnection, ResolvedVariable
    from leoflow.secrets.view import connection_view, variable_view

    shown = connection_view(ResolvedConnection("u", "mysql://me:s3cr%40t@db:3306/app?charset=utf8",
                                               "vault:secret/leoflow/connections/u", None))
    assert shown.description == "[Vault: secret/leoflow/connections/u]"
    assert (shown.conn_type, shown.host, shown.login, shown.port, shown.schema) == ("mysql", "db", "me", 3306, "app")
    assert shown.password == "***" and "s3cr" not in repr(shown)
    assert json.loads(shown.extra or "{}") == {"charset": "utf8"}
    var = variable_view(ResolvedVariable("k", "plain-looking", "vault:secret/leoflow/variables/k"), "note")
    assert (var.value, var.description) == ("***", "[Vault: secret/leoflow/variables/k] note")
    assert variable_view(ResolvedVariable("k", "v", "store")).value == "v"


def test_delivery_fails_a_try_when_vault_stays_unavailable(openbao: OpenBao, store: SqliteStore,
                                                           tmp_path: Path) -> None:
    from leoflow.executors.port import TryOutcome
    from leoflow.secrets.delivery import prepare
    from leoflow.store.repos.agent_queue import AgentQueue

    queue = AgentQueue(store, "leoflow")
    denied = VaultSession(provision(openbao, "deliv-denied", ["default"], tmp_path))  # no KV read policy
    clock = [0.0]
    secrets = TaskSecrets(_backend(openbao, store, denied), unavailable_grace=30.0, clock=lambda: clock[0])
    key = TryKey("d", "r", "needs-vault", -1, 1)
    queue.enqueue(TryRequest(key, ("true",), connections=("anything",)), 0.0)
    entry = queue.find(key)
    assert entry is not None
    assert prepare(secrets, queue, entry) is None  # a blip: stays pending
    assert queue.find(key).status == "pending"  # type: ignore[union-attr]
    clock[0] = 31.0
    assert prepare(secrets, queue, queue.find(key)) is None  # type: ignore[arg-type]
    (_, event), = queue.events()
    assert event.outcome is TryOutcome.FAILED
    assert (event.reason or "").startswith("declared secrets could not be read for 31s: ")
    assert "Vault refused the request" in (event.reason or "")
