from datetime import UTC, datetime, timedelta

import pytest

from leoflow.domain.dag import DAG, Param, Resources, Task
from leoflow.domain.serialize import (
    SerializedFormError,
    canonical_json,
    dag_from_dict,
    dag_hash,
    dag_to_dict,
)
from leoflow.domain.states import TriggerRule

FULL = DAG(
    dag_id="full",
    fileloc="dir/full.yaml",
    description="every field",
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    end_date=datetime(2024, 2, 1, 6, tzinfo=UTC),
    timezone="Europe/Berlin",
    catchup=True,
    max_active_runs=2,
    max_active_tasks=3,
    dagrun_timeout=timedelta(hours=1),
    tags=("b", "a"),
    owner="ops",
    params={"n": Param("n", 1, {"type": "integer"}, "a number")},
    default_args={"retries": 2},
    doc_md="# doc",
    is_paused_upon_creation=False,
    tasks={
        "a": Task("a", command=("echo", "a"), image="busybox", env={"X": "1"}, retries=2,
                  retry_delay=timedelta(seconds=1.5), retry_exponential_backoff=True,
                  max_retry_delay=timedelta(minutes=1), execution_timeout=timedelta(seconds=30), pool="p",
                  pool_slots=2, priority_weight=-1, queue="gpu", resources=Resources(500, 1024, 2048),
                  connections=("db",), variables=("v",), owner="me", doc_md="task doc", is_setup=True,
                  driver="exec", args=("--x",)),
        "b": Task("b", command=("echo",), upstream=frozenset({"a"}), trigger_rule=TriggerRule.ALL_DONE,
                  is_teardown=True),
    },
)


def test_round_trip_is_exact() -> None:
    data = dag_to_dict(FULL)
    assert dag_from_dict(data) == FULL
    assert dag_to_dict(dag_from_dict(data)) == data


def test_hash_is_canonical_and_content_sensitive() -> None:
    again = dag_from_dict(dag_to_dict(FULL))
    assert dag_hash(again) == dag_hash(FULL) == dag_hash(dag_to_dict(FULL))
    changed = DAG(**{**FULL.__dict__, "description": "other"})
    assert dag_hash(changed) != dag_hash(FULL)
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_tasks_are_sorted_and_defaults_spelled_out() -> None:
    data = dag_to_dict(DAG("d", {"z": Task("z"), "a": Task("a")}))
    assert [t["task_id"] for t in data["tasks"]] == ["a", "z"]
    assert data["tasks"][0]["retry_delay"] == 300
    assert data["__version"] == 1


def test_bad_forms() -> None:
    data = dag_to_dict(FULL)
    with pytest.raises(SerializedFormError, match="unsupported format version 99"):
        dag_from_dict({**data, "__version": 99})
    with pytest.raises(SerializedFormError, match="missing key 'tasks'"):
        dag_from_dict({k: v for k, v in data.items() if k != "tasks"})
    with pytest.raises(SerializedFormError, match="expected an ISO 8601 datetime"):
        dag_from_dict({**data, "start_date": "yesterday"})
    with pytest.raises(SerializedFormError, match="'nope' is not a valid TriggerRule"):
        dag_from_dict({**data, "tasks": [{**data["tasks"][0], "trigger_rule": "nope"}]})
    with pytest.raises(SerializedFormError, match="datetimes in a DAG must be timezone-aware"):
        dag_to_dict(DAG("d", {}, start_date=datetime(2024, 1, 1)))
