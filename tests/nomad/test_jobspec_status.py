"""Pure parts: the job JSON for a try, and the allocation -> outcome mapping (table tests)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from leoflow.domain.dag import Resources
from leoflow.executors.nomad.jobspec import (
    META_CONNECTIONS,
    META_VARIABLES,
    JobSettings,
    JobSpecError,
    build_job,
    declared_from_job,
    declared_from_meta,
    job_id_for,
    register_body,
    secrets_template,
    try_key_from_meta,
)
from leoflow.executors.nomad.status import placement_reason, verdict
from leoflow.executors.port import TryKey, TryOutcome, TryRequest

KEY = TryKey("etl_daily", "scheduled__2026-01-01T00:00:00+00:00", "extract", -1, 2)


def _req(**kw: Any) -> TryRequest:
    base: dict[str, Any] = dict(key=KEY, command=("python", "-m", "job", "--day", "2026-01-01"),
                                image="registry.example/etl:1.2", env={"FOO": "bar"},
                                resources=Resources(cpu=500, memory=512, memory_max=1024))
    base.update(kw)
    return TryRequest(**base)


def test_job_ids_are_deterministic_safe_and_bounded() -> None:
    assert job_id_for(KEY) == job_id_for(KEY)
    assert job_id_for(KEY) != job_id_for(dataclasses.replace(KEY, try_number=3))
    assert re.fullmatch(r"lf-etl-daily-extract-[0-9a-f]{12}-t2", job_id_for(KEY))
    weird = TryKey("Ünïcode DAG/with spaces?#%" * 10, "run:+/..", "task" * 60, 7, 12)
    jid = job_id_for(weird)
    assert re.fullmatch(r"[a-z0-9-]+", jid) and len(jid) <= 96 and jid.endswith("-t12")
    # Two tries whose slugs collide stay apart (the hash covers the exact ids).
    assert job_id_for(TryKey("a.b", "r", "t", -1, 1)) != job_id_for(TryKey("a-b", "r", "t", -1, 1))
    assert job_id_for(TryKey("d", "r", "t", 0, 1)) != job_id_for(TryKey("d", "r", "t", 1, 1))


def test_the_batch_job_owns_no_retries_and_runs_docker_by_default() -> None:
    job = build_job(_req(), JobSettings(namespace="leoflow", region="eu", datacenters=("dc1", "dc2"),
                                        node_pool="batch", node_class="compute", meta={"team": "data"}))
    assert job["Type"] == "batch" and job["ID"] == job["Name"] == job_id_for(KEY)
    assert job["Namespace"] == "leoflow" and job["Region"] == "eu" and job["Datacenters"] == ["dc1", "dc2"]
    assert job["NodePool"] == "batch"
    assert {"LTarget": "${node.class}", "RTarget": "compute", "Operand": "="} in job["Constraints"]
    group = job["TaskGroups"][0]
    assert group["Count"] == 1
    assert group["RestartPolicy"]["Attempts"] == 0 and group["RestartPolicy"]["Mode"] == "fail"
    assert group["ReschedulePolicy"]["Attempts"] == 0 and group["ReschedulePolicy"]["Unlimited"] is False
    task = group["Tasks"][0]
    assert task["Driver"] == "docker"
    assert task["Config"] == {"image": "registry.example/etl:1.2", "command": "python",
                              "args": ["-m", "job", "--day", "2026-01-01"]}
    assert task["Resources"] == {"CPU": 500, "MemoryMB": 512, "MemoryMaxMB": 1024}
    lc = task["LogConfig"]
    assert group["EphemeralDisk"]["SizeMB"] >= 2 * lc["MaxFiles"] * lc["MaxFileSizeMB"]
    env = task["Env"]
    assert env["FOO"] == "bar" and env["AIRFLOW_CTX_DAG_ID"] == "etl_daily" and env["AIRFLOW_CTX_TRY_NUMBER"] == "2"
    assert env["AIRFLOW_CTX_DAG_RUN_ID"] == KEY.run_id and env["AIRFLOW_CTX_TASK_ID"] == "extract"
    assert env["LEOFLOW_XCOM_RETURN"] == "${NOMAD_ALLOC_DIR}/xcom_return.json"
    assert job["Meta"]["team"] == "data" and try_key_from_meta(job["Meta"]) == KEY
    assert all(isinstance(v, str) for v in job["Meta"].values())
    assert "Vault" not in task and "Templates" not in task
    body = register_body(job)
    assert body["EnforceIndex"] is True and body["JobModifyIndex"] == 0 and body["Job"] == job


def test_exec_and_raw_exec_drivers_and_queue_routing() -> None:
    job = build_job(_req(driver="raw_exec", image=None, queue="gpu", timeout_seconds=90), JobSettings())
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Driver"] == "raw_exec" and task["Config"] == {"command": "python",
                                                               "args": ["-m", "job", "--day", "2026-01-01"]}
    assert job["Constraints"] == [{"LTarget": "${meta.leoflow_queue}", "RTarget": "gpu", "Operand": "="}]
    assert job["Meta"]["leoflow_timeout"] == "90" and job["Meta"]["leoflow_queue"] == "gpu"
    assert build_job(_req(driver="exec"), JobSettings())["TaskGroups"][0]["Tasks"][0]["Driver"] == "exec"
    assert "Constraints" not in build_job(_req(), JobSettings())


@pytest.mark.parametrize(("kw", "message"), [
    ({"driver": "podman"}, "driver 'podman' is not one of docker, exec, raw_exec"),
    ({"image": None}, "the docker driver needs an image"),
    ({"command": ()}, "command is empty"),
])
def test_a_try_that_cannot_be_a_job_names_the_field(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(JobSpecError, match=re.escape(message)):
        build_job(_req(**kw), JobSettings())


def test_secrets_come_from_vault_templates_never_the_plain_env() -> None:
    req = _req(connections=("warehouse_db",), variables=("api-key",),
               env={"AIRFLOW_CONN_WAREHOUSE_DB": "postgres://u:leaked@h/db", "OK": "1"})
    job = build_job(req, JobSettings(vault_role="leoflow-task", kv_mount="kv", connections_path="lf/conns/",
                                     variables_path="lf/vars"))
    task = job["TaskGroups"][0]["Tasks"][0]
    assert "AIRFLOW_CONN_WAREHOUSE_DB" not in task["Env"] and "leaked" not in str(job)
    assert task["Vault"] == {"Role": "leoflow-task", "ChangeMode": "noop"}
    (tmpl,) = task["Templates"]
    assert tmpl["DestPath"] == "secrets/leoflow.env" and tmpl["Envvars"] is True and tmpl["ChangeMode"] == "noop"
    text = tmpl["EmbeddedTmpl"]
    assert 'AIRFLOW_CONN_WAREHOUSE_DB={{ with secret "kv/data/lf/conns/warehouse_db" }}' in text
    assert "{{ .Data.data.conn_uri | toJSON }}" in text
    assert 'AIRFLOW_VAR_API_KEY={{ with secret "kv/data/lf/vars/api-key" }}{{ .Data.data.value | toJSON }}' in text
    assert text == secrets_template(req, JobSettings(kv_mount="kv", connections_path="lf/conns/",
                                                     variables_path="lf/vars"))
    assert "Role" not in build_job(req, JobSettings())["TaskGroups"][0]["Tasks"][0]["Vault"]


def test_declared_ids_travel_in_meta_and_are_read_back_also_from_older_jobs() -> None:
    """An executor adopting a job after a failover masks what the job declares (adr/0097): the ids
    are in the meta; a job registered before they were put there is read from its template."""
    req = _req(connections=("warehouse_db", "s3.logs"), variables=("api-key",))
    job = build_job(req, JobSettings(kv_mount="kv", connections_path="lf/conns/", variables_path="lf/vars"))
    assert (job["Meta"][META_CONNECTIONS], job["Meta"][META_VARIABLES]) == ("warehouse_db,s3.logs", "api-key")
    declared = (("warehouse_db", "s3.logs"), ("api-key",))
    assert declared_from_meta(job["Meta"]) == declared
    older = {**job, "Meta": {k: v for k, v in job["Meta"].items() if k not in (META_CONNECTIONS, META_VARIABLES)}}
    assert declared_from_meta(older["Meta"]) is None
    assert declared_from_job(older) == declared
    plain = build_job(_req(), JobSettings())
    assert (plain["Meta"][META_CONNECTIONS], plain["Meta"][META_VARIABLES]) == ("", "")
    assert declared_from_meta(plain["Meta"]) == ((), ())
    assert declared_from_job(None) == ((), ())
    assert "Templates" not in plain["TaskGroups"][0]["Tasks"][0]


def _alloc(client: str, desired: str = "run", events: list[dict[str, Any]] | None = None, failed: bool = False,
           **extra: Any) -> dict[str, Any]:
    return {"ID": "a1", "JobID": "lf-x", "NodeName": "n1", "ClientStatus": client, "DesiredStatus": desired,
            "TaskStates": {"main": {"State": "dead", "Failed": failed, "Events": events or []}}, **extra}


def _term(code: int, signal: int = 0, oom: bool = False) -> dict[str, Any]:
    ev: dict[str, Any] = {"Type": "Terminated", "ExitCode": code, "Signal": signal,
                          "Details": {"oom_killed": str(oom).lower()}}
    if oom:
        ev["Message"] = "OOM Killed"
    return ev


@pytest.mark.parametrize(("alloc", "outcome", "exit_code", "reason"), [
    (_alloc("pending"), None, None, None),
    (_alloc("unknown"), None, None, None),
    (_alloc("running"), TryOutcome.STARTED, None, None),
    (_alloc("complete", events=[{"Type": "Started"}, _term(0)]), TryOutcome.SUCCESS, 0, None),
    (_alloc("failed", events=[_term(3)], failed=True), TryOutcome.FAILED, 3, "exit code 3"),
    (_alloc("failed", events=[_term(143, 15)], failed=True), TryOutcome.FAILED, 143, "exit code 143, signal 15"),
    (_alloc("failed", events=[_term(137, 9, oom=True)], failed=True), TryOutcome.FAILED, 137,
     "OOM killed: the task went over its memory limit of 256 MiB (exit code 137)"),
    (_alloc("failed", events=[{"Type": "Driver Failure", "DriverError": "Failed to pull `x:1`: denied"}],
            failed=True), TryOutcome.FAILED, None, "driver failure: Failed to pull `x:1`: denied"),
    (_alloc("failed", events=[{"Type": "Setup Failure", "Message": "bad artifact"}], failed=True),
     TryOutcome.FAILED, None, "setup failure: bad artifact"),
    (_alloc("lost", "stop", ClientDescription="alloc is lost since its node is down"), TryOutcome.LOST, None,
     "Nomad allocation lost: alloc is lost since its node is down"),
    # complete is not success when the allocation was stopped: the trap in hashicorp.md §2.6.
    (_alloc("complete", "stop", events=[{"Type": "Killing"}, _term(143, 15), {"Type": "Killed"}]),
     TryOutcome.FAILED, 143, "the Nomad job was stopped outside Leoflow (allocation stop)"),
    (_alloc("complete", events=[_term(2)]), TryOutcome.FAILED, 2, "exit code 2"),
])
def test_verdicts(alloc: dict[str, Any], outcome: TryOutcome | None, exit_code: int | None, reason: str | None) -> None:
    v = verdict(alloc, memory_mb=256)
    assert (v.outcome, v.exit_code, v.reason) == (outcome, exit_code, reason)


def test_a_stop_leoflow_asked_for_is_a_cancel() -> None:
    v = verdict(_alloc("complete", "stop", events=[_term(0), {"Type": "Killed"}]), stopped_by_us=True)
    assert v.outcome is TryOutcome.FAILED and v.reason == "cancelled"
    assert verdict(_alloc("running", "stop")).outcome is None  # being stopped, not yet ended


def test_placement_reason_reads_failed_tg_allocs() -> None:
    evals = [{"ModifyIndex": 5, "Status": "blocked"},
             {"ModifyIndex": 4, "Status": "complete", "FailedTGAllocs": {"task": {
                 "NodesEvaluated": 3, "DimensionExhausted": {"memory": 3},
                 "ConstraintFiltered": {"${meta.leoflow_queue} = gpu": 2}}}}]
    assert placement_reason(evals) == ("3 nodes evaluated; exhausted: memory on 3; "
                                       "filtered by constraint: ${meta.leoflow_queue} = gpu on 2")
    assert placement_reason([{"Status": "complete"}]) is None
