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

from leoflow.api import dto
from leoflow.api.public import _bodies, _entities, _query, _secrets
from leoflow.domain.records import Variable
from leoflow.store.repos.base import Versioned

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


def _patch_fields(req: falcon.Request, body: Any) -> set[str]:
    """Airflow's variable PATCH: the fields sent, narrowed by ``update_mask`` when given."""
    mask = dto.update_mask(req, set(UPDATABLE) | {"key"})
    return (set(body.model_fields_set) & mask) if mask is not None else set(body.model_fields_set)


RESOURCE: _entities.Resource[Variable] = _entities.Resource(
    adapter=ADAPTER,
    title="Variable",
    path_param="variable_key",
    body=_bodies.VariableBody,
    bulk_body=_bodies.BulkVariables,
    sorting=SORTING,
    response=response,
    exists_detail="The Variable with key: `{ident}` already exists",
    mismatch_detail="Invalid body, key from request body doesn't match uri parameter",
    patch_fields=_patch_fields,
)


def register(app: falcon.App, ctx: Any) -> None:
    _entities.register(app, ctx, RESOURCE)
