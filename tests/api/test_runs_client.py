"""A scenario with the official ``apache-airflow-client`` 3.3.2 against a real ``leoflow-server`` process.

The server is the real console script (gunicorn + Falcon) on 127.0.0.1 and a free port, with a
SQLite store in a temporary home; the test seeds a DAG and a user through the repositories on the
same store file, logs in with ``POST /auth/token`` and then only talks to the server through the
client: list DAGs, trigger a run, list its task instances, read a log, CRUD a variable, a
connection and a pool.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

airflow_client = pytest.importorskip("airflow_client.client")

from leoflow.api.auth.passwords import hash_password  # noqa: E402
from leoflow.domain.records import User  # noqa: E402
from leoflow.executors.port import TryKey  # noqa: E402
from leoflow.logs.store import LogStore  # noqa: E402
from leoflow.store.repos import Repositories  # noqa: E402
from leoflow.store.sqlite import SqliteStore  # noqa: E402
from tests.api.seed import make_dag  # noqa: E402

PASSWORD = "client-scenario-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "leoflow-home"
    home.mkdir()
    db = home / "leoflow.db"
    store = SqliteStore(db)
    repos = Repositories.open(store)
    dag = make_dag("client_dag", tasks=("extract", "load"))
    repos.dags.record_version(dag, "dag_id: client_dag\n", bundle_name="dags-folder", bundle_version="c0ffee",
                              now=repos.clock())
    repos.users.create(User(username="alice", password_hash=hash_password(PASSWORD, n=2**8), role="admin"))
    store.close()
    port = _free_port()
    config = tmp_path / "leoflow.toml"
    config.write_text(
        f'home = "{home}"\n'
        "[store]\nbackend = \"sqlite\"\n"
        f'sqlite_path = "{db}"\n'
        "[server]\n"
        f'bind = "127.0.0.1:{port}"\nworkers = 1\nthreads = 4\n'
        "[auth]\n"
        f'jwt_secret = "{"s" * 48}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOFLOW_")}
    env["LEOFLOW_HOME"] = str(home)
    exe = Path(sys.executable).with_name("leoflow-server")
    proc = subprocess.Popen([str(exe), "--config", str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if requests.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"leoflow-server did not start (rc={proc.poll()}):\n{out[-3000:]}")
            time.sleep(0.1)
        yield {"base": base, "home": home, "db": db}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_official_client_scenario(server: dict[str, Any]) -> None:
    from airflow_client.client.api import (
        connection_api,
        dag_api,
        dag_run_api,
        pool_api,
        task_instance_api,
        variable_api,
    )
    from airflow_client.client.exceptions import ApiException
    from airflow_client.client.models import (
        ConnectionBody,
        PoolBody,
        PoolPatchBody,
        TriggerDAGRunPostBody,
        VariableBody,
    )

    token = requests.post(server["base"] + "/auth/token", json={"username": "alice", "password": PASSWORD},
                          timeout=10).json()["access_token"]
    configuration = airflow_client.Configuration(host=server["base"], access_token=token)
    with airflow_client.ApiClient(configuration) as client:
        dags = dag_api.DAGApi(client).get_dags(limit=100)
        assert [d.dag_id for d in dags.dags] == ["client_dag"]

        runs = dag_run_api.DagRunApi(client)
        run = runs.trigger_dag_run("client_dag", TriggerDAGRunPostBody(logical_date=None, conf={"n": 1}))
        assert run.state.value == "queued" and run.conf == {"n": 1}
        assert runs.get_dag_run("client_dag", run.dag_run_id).dag_run_id == run.dag_run_id
        listed = runs.get_dag_runs("~", order_by=["-run_after"], limit=10)
        assert listed.total_entries == 1

        tis = task_instance_api.TaskInstanceApi(client)
        ti_list = tis.get_task_instances("client_dag", run.dag_run_id)
        assert sorted(t.task_id for t in ti_list.task_instances) == ["extract", "load"]

        LogStore(server["home"] / "logs").append(
            TryKey("client_dag", run.dag_run_id, "extract", -1, 1),
            [{"timestamp": "2026-03-01T12:00:00Z", "level": "info", "event": "hello from the task"}],
        )
        log = tis.get_log("client_dag", run.dag_run_id, "extract", 1, map_index=-1)
        assert any("hello from the task" in str(line) for line in log.content)

        variables = variable_api.VariableApi(client)
        variables.post_variable(VariableBody(key="region", value="eu-west-1"))
        variables.post_variable(VariableBody(key="api_token", value="very-secret"))
        assert variables.get_variable("region").value == "eu-west-1"
        assert variables.get_variable("api_token").value == "***"
        variables.patch_variable("region", VariableBody(key="region", value="us-east-1"))
        assert variables.get_variable("region").value == "us-east-1"
        variables.delete_variable("region")
        with pytest.raises(ApiException) as missing:
            variables.get_variable("region")
        assert missing.value.status == 404

        conns = connection_api.ConnectionApi(client)
        conns.post_connection(ConnectionBody(connection_id="db", conn_type="postgres", host="h", password="pw"))
        got = conns.get_connection("db")
        assert got.password == "***" and got.host == "h"
        assert conns.get_connections().total_entries == 1
        conns.delete_connection("db")

        pools = pool_api.PoolApi(client)
        pools.post_pool(PoolBody(name="gpu", slots=2))
        assert pools.patch_pool("gpu", PoolPatchBody(slots=5)).slots == 5
        names = {p.name for p in pools.get_pools().pools}
        assert names == {"default_pool", "gpu"}
        pools.delete_pool("gpu")
