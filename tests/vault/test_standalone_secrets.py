"""Standalone, no Vault: declared connections/variables come from the store over the same path (local JWKS)."""

from __future__ import annotations

import hashlib
import json
import sys

from leoflow.domain.records import Connection, Variable
from leoflow.executors.port import TryKey, TryOutcome, TryRequest
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository
from tests.agent.conftest import Rig, rig  # noqa: F401 - the agents suite's standalone rig fixture

PASSWORD = "st@ndal0ne/pw?#"

TASK = r"""
import hashlib, json, os
from urllib.parse import unquote, urlsplit
uri = os.environ["AIRFLOW_CONN_LOCAL_DB"]
print("password is", unquote(urlsplit(uri).password), "and the api key is", os.environ["AIRFLOW_VAR_API_KEY"])
print("plain is", os.environ["AIRFLOW_VAR_PLAIN"])
with open(os.environ["LEOFLOW_XCOM_RETURN"], "w") as fh:
    json.dump(hashlib.sha256(unquote(urlsplit(uri).password).encode()).hexdigest() == os.environ["EXPECT"], fh)
"""


def test_store_secrets_are_delivered_and_masked_without_vault(rig: Rig) -> None:  # noqa: F811
    store = rig.server.repo.store
    ks = Keyspace(rig.config.store.prefix)
    ConnectionRepository(store, ks).create(Connection("local_db", "postgres", host="h", login="u", password=PASSWORD))
    VariableRepository(store, ks).create(Variable("api_key", "key-12345-abcdef"))
    VariableRepository(store, ks).create(Variable("plain", "shown-as-is"))
    rig.agent()
    key = TryKey("dag_a", "manual__2026-01-01T00:00:00+00:00", "uses", -1, 1)
    expect = hashlib.sha256(PASSWORD.encode()).hexdigest()
    rig.executor.submit(TryRequest(key, (sys.executable, "-c", TASK), env={"EXPECT": expect},
                                   connections=("local_db",), variables=("api_key", "plain")))
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.SUCCESS, event.reason
    assert json.loads(event.xcom_return or "false") is True
    lines = [line["event"] for line in rig.logs.read(key).lines]
    assert "password is *** and the api key is ***" in lines
    assert "plain is shown-as-is" in lines  # not sensitive by name and not from Vault: Airflow shows it too
