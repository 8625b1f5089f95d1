"""Leoflow's own pages in the Airflow UI: declared as plugin external views, served under /leoflow/."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import falcon.testing
import pytest

from leoflow.domain.states import TaskInstanceState
from leoflow.executors.port import TryKey, TryRequest
from leoflow.store.repos.agent_queue import AgentLive, AgentQueue
from leoflow.store.repos.base import TIKey
from leoflow.store.repos.dags import BundleState
from leoflow.ui.status import redact_url
from tests.api.conftest import ApiHarness
from tests.api.ui.uiseed import Seeded, seed
from tests.spec_validation import assert_spec

RUNNING = "manual__2026-03-01T11:50:00+00:00"


@pytest.fixture
def seeded(api: ApiHarness) -> Seeded:
    return seed(api.repos, api.clock())


def test_plugins_declare_the_leoflow_pages(api: ApiHarness, client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/api/v2/plugins", query_string="limit=50&offset=0")
    body = assert_spec(result, "GET", "/api/v2/plugins")
    assert body["total_entries"] == 1
    views = {v["url_route"]: v for v in body["plugins"][0]["external_views"]}
    assert set(views) == {"leoflow-agents", "leoflow-executors", "leoflow-git"}
    assert views["leoflow-agents"]["href"] == "/leoflow/agents"
    assert all(v["destination"] == "nav" and v["category"] == "Leoflow" for v in views.values())
    for v in views.values():
        page = client.simulate_get(v["href"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    errors = assert_spec(client.simulate_get("/api/v2/plugins/importErrors"), "GET", "/api/v2/plugins/importErrors")
    assert errors == {"import_errors": [], "total_entries": 0}
    assert api.anon.simulate_get("/api/v2/plugins").status_code == 401


def test_agents_page_shows_live_agents_pools_and_running_tasks(api: ApiHarness, seeded: Seeded,
                                                                client: falcon.testing.TestClient) -> None:
    queue = AgentQueue(api.ctx.store, api.ctx.config.store.prefix)
    now = api.clock().timestamp()
    session = api.ctx.store.session_create(name="server-a", ttl=30)
    assert queue.hold_server_key("server-a", session, now)
    queue.mark_connected(AgentLive(agent_id="agent-1", server_id="server-a", conn="c1", connected=True, since=now,
                                   pools=("default", "gpu"), capacity=4, hostname="build-01", version="0.1.0",
                                   labels={"zone": "eu"}))
    queue.mark_connected(AgentLive(agent_id="agent-2", server_id="server-gone", conn="c2", connected=True,
                                   since=now, pools=("default",), capacity=2, hostname="build-02"))
    queue.mark_connected(AgentLive(agent_id="agent-3", server_id="server-a", conn="c3", connected=False,
                                   since=now, pools=("gpu",), capacity=1, hostname="old-03"))
    run_key = TryKey("etl", RUNNING, "transform", -1, 1)
    assert queue.enqueue(TryRequest(key=run_key, command=("echo",), queue="default"), now - 30)
    assert queue.enqueue(TryRequest(key=TryKey("etl", RUNNING, "load", -1, 1), command=("echo",), queue="gpu"), now - 5)
    entry = next(e for e in queue.all_entries() if e.key == run_key)
    assert queue.claim(entry, "agent-1", "c1", now - 20) is not None

    data = client.simulate_get("/leoflow/agents.json").json
    agents = {a["agent_id"]: a for a in data["agents"]}
    assert agents["agent-1"]["healthy"] and agents["agent-1"]["running"] == 1 and agents["agent-1"]["free"] == 3
    assert agents["agent-1"]["tries"][0]["task_id"] == "transform"
    assert not agents["agent-2"]["healthy"] and agents["agent-2"]["connected"]  # its server is gone
    assert not agents["agent-3"]["connected"]
    assert data["healthy"] == 1
    pools = {p["pool"]: p for p in data["pools"]}
    assert pools["default"] == {**pools["default"], "pending": 0, "running": 1, "agents": 1, "capacity": 4}
    assert pools["gpu"]["pending"] == 1 and pools["gpu"]["agents"] == 1
    assert pools["gpu"]["oldest_pending"].endswith("Z")

    html = client.simulate_get("/leoflow/agents")
    assert html.status_code == 200
    assert "build-01" in html.text and "server lost" in html.text and "disconnected" in html.text
    assert f"/dags/etl/runs/{RUNNING.replace(':', '%3A').replace('+', '%2B')}" in html.text
    assert html.headers["x-frame-options"] == "SAMEORIGIN"


def test_executors_page_counts_queues_and_nomad_jobs(api: ApiHarness, seeded: Seeded,
                                                      client: falcon.testing.TestClient) -> None:
    tis = api.repos.task_instances
    cur = tis.require(TIKey("etl", RUNNING, "transform"))
    tis.transition(cur, replace(cur.record, executor="nomad", executor_ref="leoflow-etl-transform-1"))
    queue = AgentQueue(api.ctx.store, api.ctx.config.store.prefix)
    now = api.clock().timestamp()
    for i in range(3):
        queue.enqueue(TryRequest(key=TryKey("etl", RUNNING, f"t{i}", -1, 1), command=("x",), queue="batch"), now)
    data = client.simulate_get("/leoflow/executors.json").json
    assert data["counts_by_executor"] == {"nomad": 1}
    assert data["nomad_tries"][0]["executor_ref"] == "leoflow-etl-transform-1"
    assert data["nomad_tries"][0]["state"] == TaskInstanceState.RUNNING.value
    assert {p["pool"]: p["pending"] for p in data["pools"]} == {"batch": 3}
    html = client.simulate_get("/leoflow/executors").text
    assert "leoflow-etl-transform-1" in html and "batch" in html


def test_git_page_shows_commit_errors_and_versions(api: ApiHarness, seeded: Seeded,
                                                    client: falcon.testing.TestClient) -> None:
    api.ctx.config.dags.repo = "https://deploy:s3cret@git.example.com/team/dags.git"
    dags = api.repos.dags
    dags.save_bundle(BundleState(name="dags-folder", version="b" * 40, last_sync_at=api.clock(),
                                 last_error="fatal: could not read from remote", last_error_at=api.clock()))
    dags.apply(dags.import_error_ops("dags-folder", "dags/bad.yaml", "line 3\nyaml: mapping values are not allowed",
                                     api.clock() - timedelta(minutes=1)), what="seed error")
    data = client.simulate_get("/leoflow/git.json").json
    assert data["repo"] == "https://***@git.example.com/team/dags.git"
    assert data["commit"] == "b" * 40 and data["last_error"].startswith("fatal")
    assert data["import_errors"][0][0] == "dags/bad.yaml"
    assert [(d["dag_id"], d["version_number"]) for d in data["dags"]] == [("etl", 2), ("idle", 1)]
    html = client.simulate_get("/leoflow/git").text
    assert "s3cret" not in html and "mapping values are not allowed" in html and "v2" in html


def test_pages_escape_untrusted_text(api: ApiHarness, client: falcon.testing.TestClient) -> None:
    queue = AgentQueue(api.ctx.store, api.ctx.config.store.prefix)
    queue.mark_connected(AgentLive(agent_id="a", server_id="s", conn="c", connected=True, since=0,
                                   hostname="<script>alert(1)</script>"))
    html = client.simulate_get("/leoflow/agents").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_pages_need_a_session(api: ApiHarness) -> None:
    for path in ("/leoflow/agents", "/leoflow/executors.json", "/leoflow/git"):
        assert api.anon.simulate_get(path).status_code == 401


def test_redact_url() -> None:
    assert redact_url("https://u:p@h/x") == "https://***@h/x"
    assert redact_url("git@github.com:team/dags.git") == "git@github.com:team/dags.git"
    assert redact_url("/srv/dags") == "/srv/dags"


def test_a_nomad_try_not_placed_yet_has_no_job_id(api: ApiHarness, seeded: Seeded,
                                                   client: falcon.testing.TestClient) -> None:
    tis = api.repos.task_instances
    cur = tis.require(TIKey("etl", RUNNING, "transform"))
    # What the scheduler writes when it queues a try on Nomad, before the job exists.
    tis.transition(cur, replace(cur.record, state=TaskInstanceState.QUEUED, executor="nomad", executor_ref="nomad"))
    data = client.simulate_get("/leoflow/executors.json").json
    assert data["nomad_tries"][0]["executor_ref"] is None and data["nomad_tries"][0]["state"] == "queued"
    assert "(not placed yet)" in client.simulate_get("/leoflow/executors").text
