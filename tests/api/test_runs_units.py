"""Pure pieces of the run-side API: Airflow's masking rule and body-error locations."""

from __future__ import annotations

import json

import pytest

from leoflow.api import problem
from leoflow.api.public import _bodies, _secrets


def test_redact_walks_objects_and_lists_at_any_depth():
    value = {"a": 1, "conn": {"password": "p", "items": [{"api_key": "k", "x": 2}]}, "secrets": ["s1", {"y": 1}]}
    assert _secrets.redact(value) == {
        "a": 1, "conn": {"password": "***", "items": [{"api_key": "***", "x": 2}]}, "secrets": ["***", {"y": "***"}]}


def test_variable_and_connection_shapes():
    assert _secrets.variable_value("my_token", "abc") == "***"
    assert _secrets.variable_value("plain", '{"dsn": "postgres://u:p@h/db", "n": 1}') == '{"dsn": "***", "n": 1}'
    assert _secrets.variable_value("plain", "text") == "text"
    assert _secrets.variable_value("plain", None) is None
    assert json.loads(_secrets.connection_extra('{"Private-Key": "x", "region": "eu"}')) == {
        "Private-Key": "***", "region": "eu"}
    assert _secrets.connection_extra("not json") == "Encountered non-JSON in `extra` field"
    assert _secrets.connection_password("pw") == "***" and _secrets.connection_password(None) is None


def test_merge_keeps_stored_secrets_sent_back_masked():
    old = {"token": "real", "host": "h", "nested": {"password": "p"}}
    new = {"token": "***", "host": "h2", "nested": {"password": "***"}}
    assert _secrets.merge(new, old) == {"token": "real", "host": "h2", "nested": {"password": "p"}}
    assert _secrets.merge("***", "pw", "password") == "pw"
    assert _secrets.merge("new", "pw", "password") == "new"


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (_bodies.BulkPools, {"actions": [{"action": "update", "entities": [{"name": 1, "slots": 1}]}]},
         "body.actions.0.entities.0.name"),
        (_bodies.ClearTaskInstancesBody, {"task_ids": [3]}, "body.task_ids.0"),
        (_bodies.TriggerDAGRunPostBody, {"logical_date": None, "conf": "x"}, "body.conf"),
        (_bodies.PatchTaskInstanceBody, {"new_state": "queued"}, "body.new_state"),
    ],
)
def test_errors_name_the_field_without_pydantic_branch_labels(model, data, field):
    with pytest.raises(problem.Problem) as caught:
        _bodies.validate(model, data)
    assert caught.value.field == field and caught.value.status_code == 422
