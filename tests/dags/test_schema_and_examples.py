"""The published JSON Schema agrees with the loader, and every example in jobs/ is valid and runs."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from leoflow.dags import build
from leoflow.dags.loader import load_directory, parse_yaml_text
from leoflow.dags.yamlfile import read_yaml
from leoflow.domain.graph import edges_of, topological_order
from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, DagRunType, TriggerRule
from leoflow.domain.templating import render_task

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "leoflow" / "dags" / "dag.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
JOBS = ROOT / "jobs"


def as_json(value: Any) -> Any:
    """What a YAML-to-JSON tool (an editor's schema check) would see: dates become ISO text."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def schema_errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(as_json(read_yaml(text).plain()))]


def test_schema_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_schema_keys_are_the_loader_keys() -> None:
    assert set(SCHEMA["properties"]) == set(build.DAG_KEYS)
    assert set(SCHEMA["$defs"]["task"]["properties"]) == set(build.TASK_KEYS)
    assert set(SCHEMA["properties"]["default_args"]["properties"]) == set(build.DEFAULT_ARG_KEYS)
    resources = SCHEMA["$defs"]["task"]["properties"]["resources"]["properties"]
    assert tuple(resources) == build.RESOURCE_KEYS
    assert SCHEMA["$defs"]["task"]["properties"]["trigger_rule"]["enum"] == [r.value for r in TriggerRule]
    assert SCHEMA["$defs"]["task"]["properties"]["driver"]["enum"] == list(build.DRIVERS)
    assert SCHEMA["$defs"]["id"]["pattern"] == build.ID_PATTERN
    param = SCHEMA["properties"]["params"]["additionalProperties"]["oneOf"][0]["properties"]
    assert set(param) == set(build.PARAM_KEYS) | set(build.PARAM_SCHEMA_KEYS)


def test_every_example_validates_against_the_schema_and_the_loader() -> None:
    yaml_files = sorted(JOBS.glob("*.yaml"))
    assert len(yaml_files) >= 5
    for path in yaml_files:
        assert schema_errors(path.read_text()) == [], path.name
    results = load_directory(JOBS)
    assert [str(e) for r in results for e in r.errors] == []
    dag_ids = {d.dag_id for r in results for d in r.dags}
    assert dag_ids == {"hello_world", "etl_chain", "fan_out_fan_in", "scheduled_catchup", "params_templated",
                       "python_dag"}


AGREEMENT = [
    # (document, valid?) — cases JSON Schema can express; loader and schema must agree on each.
    ("dag_id: d\ntasks: [{task_id: t, command: [echo]}]\n", True),
    ("dag_id: d\nschedule: null\ndagrun_timeout: 90\ntasks: [{task_id: t, image: x, upstream: []}]\n", True),
    ("dag_id: d\ntags: [a, b]\nparams: {n: 3, m: {default: 1, type: integer}}\ntasks: [{task_id: t, image: x}]\n",
     True),
    ("dag_id: d\ndefault_args: {image: x, retry_delay: 1h}\ntasks: [{task_id: t, env: {A: '1'}}]\n", True),
    ("dag_id: d\nstart_date: 2024-01-01\nend_date: '2024-02-01T00:00:00Z'\ntasks: [{task_id: t, image: x}]\n",
     True),
    ("dag_id: d\n", False),
    ("tasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: 'a b'\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\nextra: 1\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\ntasks: []\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, retries: -1}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, trigger_rule: sometimes}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, retry_delay: 5x}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, resources: {gpu: 1}}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, env: {1A: x}}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, command: echo}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, unknown: 1}]\n", False),
    ("dag_id: d\ndefault_args: {upstream: [a]}\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\ncatchup: 'yes'\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\ntags: [a, a]\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\nparams: {n: {default: 1, typo: 2}}\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\nmax_active_runs: 0\ntasks: [{task_id: t, image: x}]\n", False),
    ("dag_id: d\ntasks: [{task_id: t, image: x, driver: lxc}]\n", False),
]


@pytest.mark.parametrize(("text", "valid"), AGREEMENT)
def test_loader_and_schema_agree(text: str, valid: bool) -> None:
    assert (schema_errors(text) == []) is valid
    assert parse_yaml_text("f.yaml", text).ok is valid


# ---- the examples run on a machine without Docker -------------------------------------------

EXPECTED_FAILURES = {("etl_chain", "transform", 1), ("fan_out_fan_in", "branch_c_fails", 1)}


def _run(dag: Any, task: Any, run: DagRun, try_number: int) -> int:
    rendered = render_task(dag, task, run, try_number=try_number)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **rendered.env}
    done = subprocess.run(list(rendered.command), env=env, capture_output=True, timeout=30, check=False)
    return done.returncode


def test_every_example_declares_an_image_and_runs_as_plain_commands() -> None:
    logical = datetime(2025, 1, 3, tzinfo=UTC)
    for parsed in load_directory(JOBS):
        for dag in parsed.dags:
            run = DagRun(dag_id=dag.dag_id, run_id="manual__test", run_type=DagRunType.MANUAL,
                         state=DagRunState.RUNNING, run_after=logical, dag_version_number=1,
                         logical_date=logical, data_interval_start=logical - timedelta(days=1),
                         data_interval_end=logical, conf={})
            for task_id in topological_order(edges_of(dag)):
                task = dag.tasks[task_id]
                assert task.image, f"{dag.dag_id}.{task_id} declares no image for Nomad"
                code = _run(dag, task, run, 1)
                if (dag.dag_id, task_id, 1) in EXPECTED_FAILURES:
                    assert code != 0, f"{dag.dag_id}.{task_id} should fail its first try"
                    if task.retries:
                        assert _run(dag, task, run, 2) == 0, f"{dag.dag_id}.{task_id} retry"
                else:
                    assert code == 0, f"{dag.dag_id}.{task_id} exited {code}"
