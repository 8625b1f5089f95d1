"""Connections, variables and pools share one pattern: CRUD on a keyed record plus Airflow's bulk body.

``Adapter`` says how one resource maps between its request body, its stored record and its
response; ``bulk`` runs Airflow's ``BulkService`` rules on it: per action, ``fail`` on an
existing (create) or missing (update/delete) record reports one error for the whole action and
writes none of that action's entities; ``skip`` leaves those out; ``overwrite`` replaces. Each
action's outcome is ``{"success": [ids], "errors": [{"error", "status_code"}]}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import falcon
from pydantic import BaseModel

from leoflow.api import problem
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
    for action in body.actions:  # type: ignore[attr-defined]
        result = out[action.action] or {"success": [], "errors": []}
        out[action.action] = result
        try:
            if action.action == "create":
                _bulk_create(ctx, adapter, repo, action, result, audit)
            elif action.action == "update":
                _bulk_update(ctx, adapter, repo, action, result, audit)
            else:
                _bulk_delete(adapter, repo, action, result, audit)
        except falcon.HTTPError as exc:
            result["errors"].append({"error": exc.description or exc.title, "status_code": exc.status_code})
    return out


def _ids(adapter: Adapter[Any], entities: list[Any]) -> list[str]:
    return [e if isinstance(e, str) else adapter.id_of_body(e) for e in entities]


def _bulk_create(ctx: Any, adapter: Adapter[Any], repo: Any, action: Any, result: dict[str, Any],
                 audit: Callable[[str, str], None]) -> None:
    ids = _ids(adapter, action.entities)
    existing = {i for i in ids if repo.get(i) is not None}
    if existing and action.action_on_existence == "fail":
        raise problem.conflict(f"The {plural(adapter)} with these {adapter.id_name}s: {existing} already exist.")
    for entity, ident in zip(action.entities, ids, strict=True):
        if ident in existing:
            if action.action_on_existence == "skip":
                continue
            write_update(ctx, adapter, ident, entity, set(entity.model_fields_set) - {adapter.id_name})
        else:
            try:
                repo.create(adapter.create(entity))
            except AlreadyExists:
                raise problem.conflict(f"The {plural(adapter)} with these {adapter.id_name}s: {{{ident!r}}} "
                                       "already exist.") from None
        audit("create", ident)
        result["success"].append(ident)


def _bulk_update(ctx: Any, adapter: Adapter[Any], repo: Any, action: Any, result: dict[str, Any],
                 audit: Callable[[str, str], None]) -> None:
    ids = _ids(adapter, action.entities)
    missing = {i for i in ids if repo.get(i) is None}
    if missing and action.action_on_non_existence == "fail":
        raise problem.not_found(f"The {plural(adapter)} with these {adapter.id_name}s: {missing} were not found.")
    mask = set(action.update_mask) if action.update_mask else None
    if mask is not None and mask - adapter.updatable:
        raise problem.bad_request(f"update_mask: cannot update {sorted(mask - adapter.updatable)}")
    for entity, ident in zip(action.entities, ids, strict=True):
        if ident in missing:
            continue
        fields = (mask if mask is not None else set(entity.model_fields_set)) & adapter.updatable
        write_update(ctx, adapter, ident, entity, fields)
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
