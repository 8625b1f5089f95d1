"""Variables: CRUD, bulk (which is also how the UI imports a variables file).

Variables may hold secrets, so every method needs the ``op`` role, as in Airflow. A value whose
key Airflow's masker deems sensitive (``password``, ``secret``, ``api_key``, ... anywhere in the
key) is shown as ``***``; a JSON object value has its sensitive keys masked at any depth. A
non-string JSON value sent in a body is stored as its JSON text (Airflow: ``indent=2``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies, _entities, _query, _runs, _secrets
from leoflow.domain.records import Variable
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.errors import AlreadyExists

UPDATABLE = frozenset({"value", "description", "team_name"})


def stored_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2)


def response(v: Variable) -> dict[str, Any]:
    return {
        "key": v.key,
        "value": _secrets.variable_value(v.key, v.value),
        "description": v.description,
        # Stored in the state store as given (Consul ACLs/Vault guard it); not Fernet-encrypted.
        "is_encrypted": False,
        "team_name": v.team_name,
    }


def _create(body: Any) -> Variable:
    return Variable(key=body.key, value=stored_text(body.value), description=body.description,
                    team_name=body.team_name)


def _update(stored: Variable, body: Any, fields: set[str]) -> Variable:
    changes: dict[str, Any] = {}
    for name in fields & UPDATABLE:
        value = getattr(body, name)
        if name == "value":
            text = stored_text(value)
            shown = _secrets.variable_value(stored.key, stored.value)
            # The masked value sent back unchanged (the UI edits what it was shown) keeps the stored one.
            masked_echo = text == shown and shown != stored.value
            changes["value"] = stored.value if masked_echo else text
        else:
            changes[name] = value
    return dataclasses.replace(stored, **changes)


ADAPTER: _entities.Adapter[Variable] = _entities.Adapter(
    noun="variable",
    id_name="key",
    repo=lambda ctx: ctx.repos.variables,
    id_of_body=lambda b: b.key,
    create=_create,
    update=_update,
    updatable=UPDATABLE,
)

SORTING: _query.Sorting[Versioned[Variable]] = _query.Sorting(
    keys={
        "key": lambda v: v.record.key,
        "id": lambda v: v.create_index,
        "_val": lambda v: v.record.value,
        "description": lambda v: v.record.description,
        "is_encrypted": lambda v: False,
        "team_name": lambda v: v.record.team_name,
    },
    default="id",
    primary_key="id",
)


def _not_found(key: str) -> problem.Problem:
    return problem.not_found(f"The Variable with key: `{key}` was not found")


class VariableCollection:
    roles = {"GET": Role.OP, "POST": Role.OP, "PATCH": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        preds = _query.patterns(req, "variable_key", lambda v: v.record.key)
        resp.media = _query.listing(req, self.ctx.repos.variables.all(), preds, SORTING, "variables",
                                    lambda v: response(v.record))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.VariableBody)
        try:
            created = self.ctx.repos.variables.create(_create(body))
        except AlreadyExists:
            raise problem.conflict(f"The Variable with key: `{body.key}` already exists") from None
        _runs.audit(self.ctx, req, "post_variable", extra={"key": body.key})
        resp.status = falcon.HTTP_201
        resp.media = response(created.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.BulkVariables)

        def audit(action: str, ident: str) -> None:
            _runs.audit(self.ctx, req, f"bulk_variables.{action}", extra={"key": ident})

        resp.media = _entities.bulk(self.ctx, ADAPTER, body, audit)


class VariableItem:
    roles = {"GET": Role.OP, "PATCH": Role.OP, "DELETE": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, variable_key: str) -> None:
        found = self.ctx.repos.variables.get(variable_key)
        if found is None:
            raise _not_found(variable_key)
        resp.media = response(found.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, variable_key: str) -> None:
        body = _bodies.parse(req, _bodies.VariableBody)
        if body.key != variable_key:
            raise problem.bad_request("Invalid body, key from request body doesn't match uri parameter",
                                      field="body.key")
        mask = dto.update_mask(req, set(UPDATABLE) | {"key"})
        fields = (set(body.model_fields_set) & mask) if mask is not None else set(body.model_fields_set)
        updated = _entities.write_update(self.ctx, ADAPTER, variable_key, body, fields - {"key"})
        _runs.audit(self.ctx, req, "patch_variable", extra={"key": variable_key, "fields": sorted(fields - {"key"})})
        resp.media = response(updated.record)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, variable_key: str) -> None:
        if not self.ctx.repos.variables.delete(variable_key):
            raise _not_found(variable_key)
        _runs.audit(self.ctx, req, "delete_variable", extra={"key": variable_key})
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: Any) -> None:
    app.add_route("/api/v2/variables", VariableCollection(ctx))
    app.add_route("/api/v2/variables/{variable_key}", VariableItem(ctx))
