"""Helpers shared by the run-side API tests (dag runs, task instances, logs, xcom, entities)."""

from __future__ import annotations

from typing import Any

from tests.spec_validation import _validator, assert_spec

TI_LIST = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"


def get_ok(client: Any, path: str, **kw: Any) -> Any:
    result = client.simulate_get(path, **kw)
    assert result.status_code == 200, (path, result.status_code, result.text)
    return assert_spec(result, "GET", path.split("?")[0])


def assert_ti_items(body: dict[str, Any], schema: str = "TaskInstanceResponse") -> None:
    """``ClearTaskInstanceCollectionResponse`` items, each checked against one schema.

    The spec's ``oneOf[TaskInstanceResponse, NewTaskResponse]`` cannot be satisfied by a full task
    instance (both schemas allow extra properties, so both match); each item is validated against
    the schema it claims instead.
    """
    assert isinstance(body["total_entries"], int)
    validator = _validator("v2", {"$ref": f"#/components/schemas/{schema}"})
    for item in body["task_instances"]:
        errors = list(validator.iter_errors(item))
        assert not errors, errors[0].message


def problem_of(result: Any, status: int, method: str, path: str) -> dict[str, Any]:
    assert result.status_code == status, (method, path, result.status_code, result.text)
    body = assert_spec(result, method, path)
    assert body["status"] == status
    return body  # type: ignore[no-any-return]
