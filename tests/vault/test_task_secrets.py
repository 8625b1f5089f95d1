"""Declared connections and variables reach the task (and only that task) over the agent stream, masked in logs.

Chain of custody (lessons §8.1 item 10): a password full of URI-reserved characters goes in through
the API (or Vault), is stored / read, resolved by agentrpc at delivery, carried in the assignment
on the authenticated stream, parsed by the task from AIRFLOW_CONN_* exactly as Airflow parses it,
and never appears in the task log, the queue or any store value.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from leoflow.executors.port import TryOutcome
from leoflow.store.sqlite import SqliteStore
from tests.vault.conftest import OpenBao
from tests.vault.rig import VaultRig, provision, running_rig, token_source

NASTY = "p@ss:w/rd?#&=% +é;'\""
TOKEN_VALUE = "tok-3f9a-very-secret"

# Parses AIRFLOW_CONN_* the way Airflow's Connection(uri=...) does and proves it got the password
# without ever printing it through a side channel the test could not see: it prints it to stdout
# (which must come out masked) and returns only its hash as XCom.
TASK = r"""
import hashlib, json, os
from urllib.parse import unquote, urlsplit
uri = os.environ["AIRFLOW_CONN_CC_DB"]
parts = urlsplit(uri)
password = unquote(parts.password)
print("uri is", uri)
print("password is", password)
print("encoded password is", parts.password)
print("token is", os.environ["AIRFLOW_VAR_CC_TOKEN"])
names = sorted(n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")))
with open(os.environ["LEOFLOW_XCOM_RETURN"], "w") as fh:
    json.dump({"sha": hashlib.sha256(password.encode()).hexdigest(), "login": unquote(parts.username),
               "host": parts.hostname, "port": parts.port, "schema": unquote(parts.path[1:]),
               "token_sha": hashlib.sha256(os.environ["AIRFLOW_VAR_CC_TOKEN"].encode()).hexdigest(),
               "names": names}, fh)
"""

SNOOP = r"""
import json, os
names = sorted(n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")))
print("visible:", names)
with open(os.environ["LEOFLOW_XCOM_RETURN"], "w") as fh:
    json.dump(names, fh)
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _put(openbao: OpenBao, path: str, value: dict[str, object]) -> None:
    openbao.root().secrets.kv.v2.create_or_update_secret(path, value, mount_point=openbao.settings.kv_mount)


def _store_values(db: Path) -> str:
    store = SqliteStore(db)
    try:
        return "\n".join(e.value.decode("utf-8", "replace") for e in store.list(""))
    finally:
        store.close()


def _assert_masked(rig: VaultRig, key: object, *secrets: str) -> list[str]:
    lines = [line["event"] for line in rig.logs.read(key).lines]  # type: ignore[arg-type]
    raw = "\n".join(lines)
    for secret in secrets:
        assert secret not in raw, "a secret value reached the task log"
    return lines


def test_vault_secrets_reach_only_the_declaring_task_and_are_masked(openbao: OpenBao, vrig: VaultRig,
                                                                   tmp_path: Path) -> None:
    s = openbao.settings
    _put(openbao, f"{s.connections_path}/cc_db", {"conn_type": "postgres", "host": "db.internal", "login": "etl@corp",
                                                 "password": NASTY, "schema": "warehouse", "port": 5432})
    _put(openbao, f"{s.variables_path}/cc_token", {"value": TOKEN_VALUE})
    vrig.agent("sec-a", token_source(openbao, provision(openbao, "sec-a", ["default"], tmp_path)))
    declared = vrig.submit("uses", [sys.executable, "-c", TASK], connections=("cc_db",), variables=("cc_token",))
    other = vrig.submit("snoops", [sys.executable, "-c", SNOOP])
    event = vrig.wait_terminal(declared)
    assert event.outcome is TryOutcome.SUCCESS, event.reason
    got = json.loads(event.xcom_return or "{}")
    assert got["sha"] == _sha(NASTY) and got["token_sha"] == _sha(TOKEN_VALUE)
    assert (got["login"], got["host"], got["port"], got["schema"]) == ("etl@corp", "db.internal", 5432, "warehouse")
    assert got["names"] == ["AIRFLOW_CONN_CC_DB", "AIRFLOW_VAR_CC_TOKEN"]
    snoop = vrig.wait_terminal(other)
    assert snoop.outcome is TryOutcome.SUCCESS and json.loads(snoop.xcom_return or "null") == []
    from urllib.parse import quote

    lines = _assert_masked(vrig, declared, NASTY, quote(NASTY, safe=""), TOKEN_VALUE)
    assert "password is ***" in lines and "token is ***" in lines and "uri is ***" in lines
    # Delivered over the stream only: nothing in the store (queue entries, events) holds them.
    stored = _store_values(vrig.home / "leoflow.db")
    assert NASTY not in stored and quote(NASTY, safe="") not in stored and TOKEN_VALUE not in stored


def test_a_declared_secret_that_exists_nowhere_fails_the_try_with_its_name(openbao: OpenBao, vrig: VaultRig,
                                                                           tmp_path: Path) -> None:
    vrig.agent("sec-b", token_source(openbao, provision(openbao, "sec-b", ["default"], tmp_path)))
    key = vrig.submit("needs", ["true"], connections=("nowhere_conn",))
    event = vrig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED
    assert event.reason == ("connection 'nowhere_conn' is declared by the task but was found in neither "
                            f"Vault ({openbao.settings.kv_mount}/{openbao.settings.connections_path}/nowhere_conn) "
                            "nor the store")


def test_chain_of_custody_from_the_api_through_the_store_to_the_task(openbao: OpenBao, tmp_path: Path) -> None:
    """POST /api/v2/connections (the UI's call) -> store -> agentrpc -> stream -> task env -> Airflow parse."""
    from tests.api.conftest import make_harness

    harness = make_harness(tmp_path)
    db = tmp_path / "store.db"
    home = tmp_path / "leoflow-home"
    config = openbao.config(home, secrets_enabled=False)  # the store path only: Vault not consulted for values
    try:
        with running_rig(home, config, db=db) as rig:
            client = harness.client("admin")
            created = client.simulate_post("/api/v2/connections", json={
                "connection_id": "cc_db", "conn_type": "postgres", "host": "db.internal", "login": "etl@corp",
                "password": NASTY, "schema": "warehouse", "port": 5432})
            assert created.status_code == 201, created.text
            assert created.json["password"] == "***"
            posted = client.simulate_post("/api/v2/variables", json={"key": "cc_token", "value": TOKEN_VALUE})
            assert posted.status_code == 201, posted.text
            shown = client.simulate_get("/api/v2/connections/cc_db").json
            assert shown["password"] == "***" and NASTY not in json.dumps(shown)
            rig.agent("cc-a", token_source(openbao, provision(openbao, "cc-a", ["default"], tmp_path)))
            key = rig.submit("uses", [sys.executable, "-c", TASK], connections=("cc_db",), variables=("cc_token",))
            event = rig.wait_terminal(key)
            assert event.outcome is TryOutcome.SUCCESS, event.reason
            got = json.loads(event.xcom_return or "{}")
            assert got["sha"] == _sha(NASTY)
            assert (got["login"], got["host"], got["port"], got["schema"]) == ("etl@corp", "db.internal", 5432,
                                                                               "warehouse")
            lines = _assert_masked(rig, key, NASTY)
            assert "password is ***" in lines
            # A variable from the store is masked only when its key is sensitive (Airflow's rule): cc_token is.
            assert "token is ***" in lines
    finally:
        harness.ctx.close()
