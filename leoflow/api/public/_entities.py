"""Connections, variables and pools share one pattern: CRUD on a keyed record plus Airflow's bulk body.

``Adapter`` says how one resource maps between its request body, its stored record and its
response; ``bulk`` runs Airflow's ``BulkService`` rules on it: per action, ``fail`` on an
existing (create) or missing (update/delete) record reports one error for the whole action and
writes none of that action's entities; ``skip`` leaves those out; ``overwrite`` replaces. Each
action's outcome is ``{"success": [ids], "errors": [{"error", "status_code"}]}``. An entity too
large for the store is that action's error (413 naming ``body.actions.N.entities.M.<field>``);
entities written before it stay, and are listed under ``success``. An id Vault holds (connections
and variables, issue 8) is read-only here: each one is its action's own 409 error naming the id
and nothing is written for it; the action's other entities then follow the rules above (adr/0098).

``Resource`` adds the HTTP side that connections and variables share word for word (list, create,
bulk, get, patch, delete, with Airflow's messages and eventLog names derived from the noun), so
the two modules hold only what differs: body models, masking and how a PATCH picks its fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import falcon
from pydantic import BaseModel

from leoflow.api import problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies, _query, _runs
from leoflow.secrets import view as vault_view
from leoflow.store.port import ValueTooLarge
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.errors import AlreadyExists, Conflict

R = TypeVar("R")


@dataclass(frozen=True)
class Adapter(Generic[R]):
    noun: str  # "connection" (Airflow's messages: "The connections with these connection_ids: ...")
    id_name: str  # "connection_id"
    repo: Callable[[Any], Any]
    id_of_body: Callable[[Any], str]
    create: Callable[[Any], R]  # body -> record
    update: Callable[[R, Any, set[str]], R]  # (stored, body, fields to apply) -> record
    updatable: frozenset[str]
    check_delete: Callable[[str], None] | None = None


def plural(adapter: Adapter[Any]) -> str:
    return adapter.noun + "s"


def write_update(ctx: Any, adapter: Adapter[R], ident: str, body: Any, fields: set[str]) -> Versioned[R]:
    """Read-modify-CAS, retried when someone else wrote in between."""
    repo = adapter.repo(ctx)
    for _ in range(5):
        current = repo.get(ident)
        if current is None:
            raise problem.not_found(f"The {adapter.noun.capitalize()} with {adapter.id_name}: `{ident}` was not found")
        try:
            return repo.update(current, adapter.update(current.record, body, fields))  # type: ignore[no-any-return]
        except Conflict:
            continue
    raise problem.conflict(f"{adapter.noun} {ident!r} kept changing while being updated; retry")


def bulk(ctx: Any, adapter: Adapter[R], body: BaseModel, audit: Callable[[str, str], None]) -> dict[str, Any]:
    repo = adapter.repo(ctx)
    out: dict[str, Any] = {"create": None, "update": None, "delete": None}
    actions = list(body.actions)  # type: ignore[attr-defined]
    in_vault = vault_view.held_ids(ctx, adapter.noun, [i for a in actions for i in _ids(adapter, a.entities)])
    for i, action in enumerate(actions):
        result = out[action.action] or {"success": [], "errors": []}
        out[action.action] = result
        if in_vault:
            action = _without_vault_held(ctx, adapter, action, in_vault, result)
            if not action.entities:
                continue
        try:
            if action.action == "create":
                _bulk_create(ctx, adapter, repo, action, result, audit, f"body.actions.{i}")
            elif action.action == "update":
                _bulk_update(ctx, adapter, repo, action, result, audit, f"body.actions.{i}")
            else:
                _bulk_delete(adapter, repo, action, result, audit)
        except falcon.HTTPError as exc:
            result["errors"].append({"error": exc.description or exc.title, "status_code": exc.status_code})
    return out


def _without_vault_held(ctx: Any, adapter: Adapter[Any], action: Any, in_vault: set[str],
                        result: dict[str, Any]) -> Any:
    """The action minus the ids Vault holds, each reported in its ``errors`` (409, as a single write)."""
    keep = []
    for entity, ident in zip(action.entities, _ids(adapter, action.entities), strict=True):
        if ident in in_vault:
            result["errors"].append({"error": vault_view.held_message(ctx, adapter.noun, ident), "status_code": 409})
        else:
            keep.append(entity)
    return action.model_copy(update={"entities": keep}) if len(keep) != len(action.entities) else action


def _too_large(entity: BaseModel, where: str) -> problem.Problem:
    return problem.value_too_large(entity.model_dump(mode="json", by_alias=True), where)


def _ids(adapter: Adapter[Any], entities: list[Any]) -> list[str]:
    return [e if isinstance(e, str) else adapter.id_of_body(e) for e in entities]


def _bulk_create(ctx: Any, adapter: Adapter[Any], repo: Any, action: Any, result: dict[str, Any],
                 audit: Callable[[str, str], None], where: str) -> None:
    ids = _ids(adapter, action.entities)
    existing = {i for i in ids if repo.get(i) is not None}
    if existing and action.action_on_existence == "fail":
        raise problem.conflict(f"The {plural(adapter)} with these {adapter.id_name}s: {existing} already exist.")
    for j, (entity, ident) in enumerate(zip(action.entities, ids, strict=True)):
        if ident in existing and action.action_on_existence == "skip":
            continue
        try:
            if ident in existing:
                write_update(ctx, adapter, ident, entity, set(entity.model_fields_set) - {adapter.id_name})
            else:
                repo.create(adapter.create(entity))
        except AlreadyExists:
            raise problem.conflict(f"The {plural(adapter)} with these {adapter.id_name}s: {{{ident!r}}} "
                                   "already exist.") from None
        except ValueTooLarge:
            raise _too_large(entity, f"{where}.entities.{j}") from None
        audit("create", ident)
        result["success"].append(ident)


def _bulk_update(ctx: Any, adapter: Adapter[Any], repo: Any, action: Any, result: dict[str, Any],
                 audit: Callable[[str, str], None], where: str) -> None:
    ids = _ids(adapter, action.entities)
    missing = {i for i in ids if repo.get(i) is None}
    if missing and action.action_on_non_existence == "fail":
        raise problem.not_found(f"The {plural(adapter)} with these {adapter.id_name}s: {missing} were not found.")
    mask = set(action.update_mask) if action.update_mask else None
    if mask is not None and mask - adapter.updatable:
        raise problem.bad_request(f"update_mask: cannot update {sorted(mask - adapter.updatable)}")
    for j, (entity, ident) in enumerate(zip(action.entities, ids, strict=True)):
        if ident in missing:
            continue
        fields = (mask if mask is not None else set(entity.model_fields_set)) & adapter.updatable
        try:
            write_update(ctx, adapter, ident, entity, fields)
        except ValueTooLarge:
            raise _too_large(entity, f"{where}.entities.{j}") from None
        audit("update", ident)
        result["success"].append(ident)


def _bulk_delete(adapter: Adapter[Any], repo: Any, action: Any, result: dict[str, Any],
                 audit: Callable[[str, str], None]) -> None:
    ids = _ids(adapter, action.entities)
    missing = {i for i in ids if repo.get(i) is None}
    if missing and action.action_on_non_existence == "fail":
        raise problem.not_found(f"The {plural(adapter)} with these {adapter.id_name}s: {missing} were not found.")
    for ident in ids:
        if ident in missing:
            continue
        if adapter.check_delete is not None:
            adapter.check_delete(ident)
        if repo.delete(ident):
            audit("delete", ident)
            result["success"].append(ident)


# ---------------------------------------------------------------------------------------------
# The HTTP resources connections and variables share.


@dataclass(frozen=True)
class Resource(Generic[R]):
    """What differs between two keyed-record endpoints; messages and audit names follow ``noun``."""

    adapter: Adapter[R]
    title: str  # "Connection" / "Variable", as Airflow's messages spell it
    path_param: str  # "connection_id" / "variable_key": the URI field, and the list's ?<name>_pattern=
    body: type[BaseModel]
    bulk_body: type[BaseModel]
    sorting: _query.Sorting[Versioned[R]]
    response: Callable[[R], dict[str, Any]]
    exists_detail: str  # Airflow's 409 text, "{ident}" filled in
    mismatch_detail: str  # Airflow's 400 text when the body's id is not the URL's
    patch_fields: Callable[[falcon.Request, Any], set[str]]  # fields a PATCH applies (id excluded)

    def not_found(self, ident: str) -> problem.Problem:
        return problem.not_found(f"The {self.title} with {self.adapter.id_name}: `{ident}` was not found")

    def audit(self, ctx: Any, req: falcon.Request, action: str, ident: str, **extra: Any) -> None:
        _runs.audit(ctx, req, action, extra={self.adapter.id_name: ident, **extra})


class Collection(Generic[R]):
    """``GET`` (list), ``POST`` (create) and ``PATCH`` (Airflow's bulk body) on ``/api/v2/<plural>``."""

    roles = {"GET": Role.OP, "POST": Role.OP, "PATCH": Role.OP}

    def __init__(self, ctx: Any, resource: Resource[R]) -> None:
        self.ctx = ctx
        self.r = resource

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = self.r.adapter
        preds = _query.patterns(req, self.r.path_param, lambda v: a.id_of_body(v.record))
        rows = vault_view.with_vault(self.ctx, a.noun, a.repo(self.ctx).all())  # issue 8: Vault-held ids too
        resp.media = _query.listing(req, rows, preds, self.r.sorting, plural(a),
                                    lambda v: self.r.response(v.record))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = self.r.adapter
        body = _bodies.parse(req, self.r.body)
        ident = a.id_of_body(body)
        vault_view.refuse_if_in_vault(self.ctx, a.noun, ident)
        try:
            created = a.repo(self.ctx).create(a.create(body))
        except AlreadyExists:
            raise problem.conflict(self.r.exists_detail.format(ident=ident)) from None
        self.r.audit(self.ctx, req, f"post_{a.noun}", ident)
        resp.status = falcon.HTTP_201
        resp.media = self.r.response(created.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, self.r.bulk_body)
        prefix = f"bulk_{plural(self.r.adapter)}"

        def audit(action: str, ident: str) -> None:
            self.r.audit(self.ctx, req, f"{prefix}.{action}", ident)

        resp.media = bulk(self.ctx, self.r.adapter, body, audit)


class Item(Generic[R]):
    """``GET``, ``PATCH`` (optional ``update_mask``) and ``DELETE`` on ``/api/v2/<plural>/{id}``."""

    roles = {"GET": Role.OP, "PATCH": Role.OP, "DELETE": Role.OP}

    def __init__(self, ctx: Any, resource: Resource[R]) -> None:
        self.ctx = ctx
        self.r = resource

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        ident = params[self.r.path_param]
        in_vault = vault_view.held(self.ctx, self.r.adapter.noun, ident)  # Vault first; source named, values hidden
        if in_vault is not None:
            resp.media = self.r.response(in_vault)
            return
        found = self.r.adapter.repo(self.ctx).get(ident)
        if found is None:
            raise self.r.not_found(ident)
        resp.media = self.r.response(found.record)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        a = self.r.adapter
        ident = params[self.r.path_param]
        body = _bodies.parse(req, self.r.body)
        if a.id_of_body(body) != ident:
            raise problem.bad_request(self.r.mismatch_detail, field=f"body.{a.id_name}")
        vault_view.refuse_if_in_vault(self.ctx, a.noun, ident)
        fields = self.r.patch_fields(req, body) - {a.id_name}
        updated = write_update(self.ctx, a, ident, body, fields)
        self.r.audit(self.ctx, req, f"patch_{a.noun}", ident, fields=sorted(fields))
        resp.media = self.r.response(updated.record)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        ident = params[self.r.path_param]
        vault_view.refuse_if_in_vault(self.ctx, self.r.adapter.noun, ident)
        if not self.r.adapter.repo(self.ctx).delete(ident):
            raise self.r.not_found(ident)
        self.r.audit(self.ctx, req, f"delete_{self.r.adapter.noun}", ident)
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: Any, resource: Resource[Any]) -> None:
    base = f"/api/v2/{plural(resource.adapter)}"
    app.add_route(base, Collection(ctx, resource))
    app.add_route(f"{base}/{{{resource.path_param}}}", Item(ctx, resource))
