"""The DAG side driven by the official ``apache-airflow-client`` 3.3.2 over a real loopback socket.

The client deserializes every response into its generated (pydantic) models, so a field of the
wrong type or a missing required field fails here exactly as it would for a user's script.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from tests.api.conftest import PASSWORD, ApiHarness

client_mod = pytest.importorskip("airflow_client.client")


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class _ThreadedServer(WSGIServer):
    daemon_threads = True


@pytest.fixture
def served(api: ApiHarness) -> Iterator[tuple[ApiHarness, str]]:
    httpd = make_server("127.0.0.1", 0, api.app, server_class=_ThreadedServer, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_dag_scenario_with_the_official_client(served: tuple[ApiHarness, str]) -> None:
    api, base = served
    api.add_user("scripter", "user")
    api.seed_dag("etl", tags=("prod",), schedule="@daily", tasks=("extract", "load"), bundle_version="c1")
    api.seed_dag("etl", tags=("prod",), schedule="@daily", tasks=("extract", "transform", "load"), bundle_version="c2")
    api.seed_dag("adhoc")
    api.seed_run("etl", "manual__1", state="success")

    token = requests.post(f"{base}/auth/token", json={"username": "scripter", "password": PASSWORD},
                          timeout=10).json()["access_token"]
    config = client_mod.Configuration(host=base, access_token=token)
    with client_mod.ApiClient(config) as http:
        dags = client_mod.DAGApi(http)
        listing = dags.get_dags(tags=["prod"], order_by=["-dag_id"], limit=10)
        assert listing.total_entries == 1 and listing.dags[0].dag_id == "etl"
        details = dags.get_dag_details("etl")
        assert details.latest_dag_version.version_number == 2
        assert details.latest_dag_version.bundle_version == "c2"
        paused = dags.patch_dag("etl", client_mod.DAGPatchBody(is_paused=True))
        assert paused.is_paused is True
        bulk = dags.patch_dags(client_mod.DAGPatchBody(is_paused=False), dag_id_pattern="~")
        assert bulk.total_entries == 2 and not any(d.is_paused for d in bulk.dags)
        assert dags.get_dag_tags().tags == ["prod"]

        tasks = client_mod.TaskApi(http).get_tasks("etl")
        assert [t.task_id for t in tasks.tasks] == ["extract", "load", "transform"]
        assert client_mod.TaskApi(http).get_task("etl", "transform").downstream_task_ids == ["load"]

        versions = client_mod.DagVersionApi(http).get_dag_versions("etl", order_by=["-version_number"])
        assert [v.version_number for v in versions.dag_versions] == [2, 1]
        assert client_mod.DagVersionApi(http).get_dag_version("etl", 1).bundle_version == "c1"
        source = client_mod.DagSourceApi(http).get_dag_source("etl", version_number=1)
        assert source.version_number == 1 and "extract, load" in source.content

        stats = client_mod.DagStatsApi(http).get_dag_stats(dag_ids=["etl"])
        counts = {s.state.value if hasattr(s.state, "value") else s.state: s.count for s in stats.dags[0].stats}
        assert counts["success"] == 1
        assert client_mod.DagWarningApi(http).list_dag_warnings().total_entries == 0
        assert client_mod.ImportErrorApi(http).get_import_errors().total_entries == 0
        events = client_mod.EventLogApi(http).get_event_logs(dag_id="etl", order_by=["-when"])
        assert {e.event for e in events.event_logs} == {"patch_dag", "patch_dags"}
        assert all(e.owner == "scripter" for e in events.event_logs)
        health = client_mod.MonitorApi(http).get_health()
        assert health.metadatabase.status == "healthy"
        assert client_mod.VersionApi(http).get_version().version
        assert client_mod.ProviderApi(http).get_providers().total_entries >= 3
        assert client_mod.JobApi(http).get_jobs().total_entries == 0

        with pytest.raises(client_mod.ApiException) as err:
            dags.get_dag("no_such_dag")
        assert err.value.status == 404
        viewer_token = api.token("viewer")
        with client_mod.ApiClient(client_mod.Configuration(host=base, access_token=viewer_token)) as viewer:
            with pytest.raises(client_mod.ApiException) as err:
                client_mod.DAGApi(viewer).patch_dag("etl", client_mod.DAGPatchBody(is_paused=True))
            assert err.value.status == 403
