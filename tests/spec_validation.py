"""Validate response bodies against the official Airflow 3.3.2 OpenAPI specs (from the pinned wheel).

Used by every API test: shapes come from Airflow's own spec, never from our reading of it.

    from tests.spec_validation import assert_spec
    result = client.simulate_get("/api/v2/dags")
    assert_spec(result, "GET", "/api/v2/dags")          # template or concrete path

* The spec is chosen by prefix: ``/ui/`` → the private UI spec, ``/auth/`` → the simple-auth spec,
  everything else → the public v2 spec.
* A concrete path is matched to its template (literal segments beat ``{params}``, as Falcon does).
* 2xx bodies are validated against the operation's schema for that status (OpenAPI 3.1, with
  formats: ``date-time`` must parse). Every ``date-time`` value must also be UTC with ``Z``.
* Error bodies must be RFC 7807 problem documents (type, title, status, string detail,
  instance); where the spec declares ``HTTPExceptionResponse`` for that status they must satisfy
  it too. (Airflow's 422 ``HTTPValidationError`` has a list ``detail``; we answer a string
  ``detail`` the UI can show plus a FastAPI-style ``errors`` list, so 422s are checked against the
  problem schema only.)
* An undocumented status for an operation fails, unless it is a problem document for 400/401/403/
  405/413/415/429/500/501/503 (which any Airflow endpoint can answer but the spec does not list).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from openapi_schema_validator import OAS31Validator, oas31_format_checker

from leoflow.ui import bundle

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "title": {"type": "string", "minLength": 1},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "minLength": 1},
        "instance": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {"type": "object", "required": ["loc", "msg"],
                      "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}}},
        },
    },
}
# Statuses any Airflow endpoint can answer without its spec listing them (e.g. Airflow's SortParam
# answers 400 for an unknown order_by on list routes whose spec declares no 400).
_GENERIC_ERROR_STATUSES = {400, 401, 403, 405, 413, 415, 429, 500, 501, 503}


class SpecError(AssertionError):
    pass


def spec_name_for(path: str) -> str:
    if path.startswith("/ui/"):
        return "ui"
    if path.startswith("/auth/"):
        return "simple-auth"
    return "v2"


@cache
def _spec(name: str) -> dict[str, Any]:
    return bundle.load_spec(name)


@cache
def _templates(name: str) -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in _spec(name)["paths"]:
        regex = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
        out.append((re.compile(regex), template, literals))
    out.sort(key=lambda t: -t[2])
    return out


def match_template(path: str) -> str:
    path = path.split("?", 1)[0]
    name = spec_name_for(path)
    if path in _spec(name)["paths"]:
        return path
    for regex, template, _ in _templates(name):
        if regex.match(path):
            return template
    raise SpecError(f"no operation in the {name} spec matches {path}")


def operation(method: str, path: str) -> dict[str, Any]:
    template = match_template(path)
    name = spec_name_for(template)
    op = _spec(name)["paths"][template].get(method.lower())
    if op is None:
        raise SpecError(f"{method} {template} is not an operation of the {name} spec")
    return op  # type: ignore[no-any-return]


def _as_pydantic_unions(node: Any) -> Any:
    """``oneOf`` -> ``anyOf``: FastAPI emits ``oneOf`` for Pydantic unions, but Pydantic accepts a
    value matching any member (e.g. a full TaskInstanceResponse also matches NewTaskResponse, so no
    real Airflow clear dry-run body satisfies the literal ``oneOf``)."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _as_pydantic_unions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_pydantic_unions(v) for v in node]
    return node


@cache
def _components(name: str) -> dict[str, Any]:
    return _as_pydantic_unions(_spec(name).get("components", {}))  # type: ignore[no-any-return]


def _validator(name: str, schema: dict[str, Any]) -> OAS31Validator:
    root = _as_pydantic_unions(dict(schema))
    root["components"] = _components(name)
    return OAS31Validator(root, format_checker=oas31_format_checker)


def _check_utc(value: Any, schema: dict[str, Any], name: str, where: str) -> None:
    """Every spec ``date-time`` we emit must be UTC with a ``Z`` suffix (airflow-ui.md §7.1)."""
    comps = _spec(name).get("components", {}).get("schemas", {})

    def resolve(s: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in s and seen < 20:
            s = comps[s["$ref"].rsplit("/", 1)[1]]
            seen += 1
        return s

    def walk(v: Any, s: dict[str, Any], at: str) -> None:
        s = resolve(s)
        if isinstance(v, str) and s.get("format") == "date-time" and not v.endswith("Z"):
            raise SpecError(f"{where}: {at} = {v!r} is not UTC with a Z suffix")
        for alt in s.get("anyOf", []) + s.get("oneOf", []) + s.get("allOf", []):
            walk(v, alt, at)
        if isinstance(v, dict):
            props = s.get("properties", {})
            extra = s.get("additionalProperties")
            for k, item in v.items():
                if k in props:
                    walk(item, props[k], f"{at}.{k}")
                elif isinstance(extra, dict):
                    walk(item, extra, f"{at}.{k}")
        elif isinstance(v, list) and isinstance(s.get("items"), dict):
            for i, item in enumerate(v):
                walk(item, s["items"], f"{at}[{i}]")

    walk(value, schema, "body")


def validate_body(method: str, path: str, status: int, body: Any, content_type: str = "application/json") -> None:
    template = match_template(path)
    name = spec_name_for(template)
    op = operation(method, template)
    where = f"{method} {template} -> {status}"
    responses = op.get("responses", {})
    declared = responses.get(str(status))
    if status >= 400:
        errors = list(OAS31Validator(PROBLEM_SCHEMA).iter_errors(body))
        if errors:
            raise SpecError(f"{where}: not a problem document: {errors[0].message} in {json.dumps(body)[:300]}")
        if body["status"] != status:
            raise SpecError(f"{where}: problem status {body['status']} differs from HTTP status")
        if declared is None:
            if status in _GENERIC_ERROR_STATUSES:
                return
            raise SpecError(f"{where}: status not declared for this operation")
        schema = (declared.get("content") or {}).get("application/json", {}).get("schema")
        if schema and schema.get("$ref", "").endswith("/HTTPExceptionResponse"):
            _raise_first(_validator(name, schema), body, where)
        return
    if declared is None:
        raise SpecError(f"{where}: status not declared (declared: {sorted(responses)})")
    content = declared.get("content") or {}
    media = content.get(content_type.split(";")[0].strip()) or content.get("application/json")
    if media is None or "schema" not in media:
        return
    schema = media["schema"]
    _raise_first(_validator(name, schema), body, where)
    _check_utc(body, schema, name, where)


def _raise_first(validator: OAS31Validator, body: Any, where: str) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: len(list(e.absolute_path)))
    if errors:
        err = errors[0]
        at = "/".join(str(p) for p in err.absolute_path)
        raise SpecError(f"{where}: {err.message} at /{at} ({len(errors)} error(s))")


def assert_spec(result: Any, method: str, path: str | None = None) -> Any:
    """Validate a falcon.testing ``Result`` (or a requests/httpx response); returns the parsed body."""
    status = getattr(result, "status_code", None)
    headers = getattr(result, "headers", {}) or {}
    ctype = headers.get("content-type", "application/json")
    if path is None:
        raise SpecError("assert_spec needs the request path")
    text = result.text
    body = json.loads(text) if text else None
    if status is not None and status >= 400 and not ctype.startswith("application/problem+json"):
        raise SpecError(f"{method} {path} -> {status}: error content type is {ctype}, not application/problem+json")
    validate_body(method, path, int(status or 0), body, ctype)
    return body
