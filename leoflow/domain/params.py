"""Airflow Params: a trigger's ``conf`` resolved against the DAG's declared params.

Airflow semantics: each declared param takes the value from ``conf`` if given, else its default,
and the result must satisfy the param's JSON schema. ``conf`` keys that are not declared params
pass through unvalidated (Airflow's ``dag_run_conf_overrides_params``). Errors name the field, so
the API can answer a 400 whose detail tells the user which value to fix.

Stable API: ``resolve_params(dag, conf) -> dict`` raising ``ParamsError``; ``param_schema_errors``
(used by the DAG loaders to reject a bad schema or default at parse time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from leoflow.domain.dag import DAG, Param

_FORMATS = FormatChecker()


@dataclass(frozen=True)
class ParamIssue:
    field: str  # "x" or a nested path "x.items.0"
    message: str


class ParamsError(ValueError):
    """Every problem found, not only the first: a form can then mark all bad fields at once."""

    def __init__(self, issues: Sequence[ParamIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"param '{i.field}': {i.message}" for i in self.issues))


def _path(name: str, path: Sequence[Any]) -> str:
    return ".".join([name, *(str(p) for p in path)])


def _schema_of(param: Param) -> dict[str, Any]:
    return dict(param.schema)


@lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> str | None:
    """Checking a schema against the meta-schema is slow and DAG repos repeat the same few schemas."""
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        return f"invalid JSON schema{' at ' + where if where else ''}: {exc.message}"
    return None


def param_schema_errors(param: Param) -> list[str]:
    """Problems with a declared param itself: an invalid JSON schema, or a default it rejects."""
    schema = _schema_of(param)
    try:
        problem = _schema_problem(json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError):
        return ["invalid JSON schema: not JSON-serializable"]
    if problem is not None:
        return [problem]
    if param.default is None:
        return []
    validator = Draft202012Validator(schema, format_checker=_FORMATS)
    return [
        f"default {param.default!r} is invalid: {err.message}"
        for err in sorted(validator.iter_errors(param.default), key=lambda e: list(e.path))
    ]


def validate_value(param: Param, value: Any) -> list[ParamIssue]:
    validator = Draft202012Validator(_schema_of(param), format_checker=_FORMATS)
    return [
        ParamIssue(_path(param.name, err.absolute_path), err.message)
        for err in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    ]


def resolve_params(dag: DAG, conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """The params a run sees: declared params (conf value or default, validated) plus extra conf keys."""
    if conf is None:
        conf = {}
    if not isinstance(conf, Mapping):
        raise ParamsError([ParamIssue("conf", f"must be a JSON object, got {type(conf).__name__}")])
    issues: list[ParamIssue] = []
    resolved: dict[str, Any] = {}
    for name, param in dag.params.items():
        if name in conf:
            value = conf[name]
        elif param.default is None and not _allows_null(param):
            issues.append(ParamIssue(name, "no value passed and the param has no default value"))
            continue
        else:
            value = param.default
        issues.extend(validate_value(param, value))
        resolved[name] = value
    for name, value in conf.items():
        if name not in dag.params:
            resolved[name] = value
    if issues:
        raise ParamsError(issues)
    return resolved


def _allows_null(param: Param) -> bool:
    """A param with no default is acceptable only if its schema admits null (or says nothing of type)."""
    kind = param.schema.get("type")
    if kind is None:
        return True
    if isinstance(kind, str):
        return kind == "null"
    return "null" in kind
