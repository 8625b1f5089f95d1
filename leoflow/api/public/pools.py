"""Pools: CRUD and bulk; slot counters come from the task instances' real states.

``occupied = running + queued (+ deferred when the pool includes deferred)``, ``open = slots -
occupied`` (``-1`` for an unlimited pool), computed by ``Repositories.pool_slots()`` from the task
instances of active runs. ``default_pool`` always exists (created on first use with Airflow's
128 slots), cannot be deleted, and only its ``slots``/``include_deferred`` may change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import falcon

from leoflow.api import dto, problem
from leoflow.api.auth.roles import Role
from leoflow.api.public import _bodies, _entities, _query, _runs
from leoflow.domain.dag import DEFAULT_POOL
from leoflow.domain.records import Pool
from leoflow.store.repos import PoolSlots
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.errors import AlreadyExists

UPDATABLE = frozenset({"slots", "description", "include_deferred", "team_name"})
DEFAULT_POOL_UPDATABLE = frozenset({"slots", "include_deferred"})


def response(p: Pool, usage: PoolSlots | None) -> dict[str, Any]:
    usage = usage or PoolSlots(p.slots)
    return {
        "name": p.name,
        "slots": p.slots,
        "description": p.description,
        "include_deferred": p.include_deferred,
        "occupied_slots": usage.occupied,
        "running_slots": usage.running,
        "queued_slots": usage.queued,
        "scheduled_slots": usage.scheduled,
        "open_slots": usage.open_slots,
        "deferred_slots": usage.deferred,
        "team_name": p.team_name,
    }


def _create(body: Any) -> Pool:
    return Pool(name=body.name, slots=body.slots, description=body.description,
                include_deferred=body.include_deferred, team_name=body.team_name)


def _update(stored: Pool, body: Any, fields: set[str]) -> Pool:
    if stored.name == DEFAULT_POOL and fields - DEFAULT_POOL_UPDATABLE:
        raise problem.bad_request("Only slots and included_deferred can be modified on Default Pool")
    changes = {name: getattr(body, name) for name in fields & UPDATABLE}
    if changes.get("slots", 0) is None:
        raise problem.invalid("body.slots", "slots cannot be null")
    if "include_deferred" in changes and changes["include_deferred"] is None:
        raise problem.invalid("body.include_deferred", "include_deferred cannot be null")
    return dataclasses.replace(stored, **changes)


def _check_delete(name: str) -> None:
    if name == DEFAULT_POOL:
        raise problem.bad_request("Default Pool can't be deleted")


ADAPTER: _entities.Adapter[Pool] = _entities.Adapter(
    noun="pool",
    id_name="name",
    repo=lambda ctx: ctx.repos.pools,
    id_of_body=lambda b: b.name,
    create=_create,
    update=_update,
    updatable=UPDATABLE,
    check_delete=_check_delete,
)

SORTING: _query.Sorting[Versioned[Pool]] = _query.Sorting(
    keys={"id": lambda v: v.create_index, "pool": lambda v: v.record.name},
    default="id",
    primary_key="id",
    aliases={"name": "pool"},
)


def _not_found(name: str) -> problem.Problem:
    return problem.not_found(f"The Pool with name: `{name}` was not found")


class PoolCollection:
    roles = {"GET": Role.VIEWER, "POST": Role.OP, "PATCH": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ctx.repos.pools.ensure_default()
        usage = self.ctx.repos.pool_slots()
        preds = _query.patterns(req, "pool_name", lambda v: v.record.name)
        resp.media = _query.listing(req, self.ctx.repos.pools.all(), preds, SORTING, "pools",
                                    lambda v: response(v.record, usage.get(v.record.name)))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.PoolBody)
        try:
            created = self.ctx.repos.pools.create(_create(body))
        except AlreadyExists:
            raise problem.conflict(f"The Pool with name: `{body.name}` already exists") from None
        _runs.audit(self.ctx, req, "post_pool", extra={"name": body.name, "slots": body.slots})
        resp.status = falcon.HTTP_201
        resp.media = response(created.record, self.ctx.repos.pool_slots().get(body.name))

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _bodies.parse(req, _bodies.BulkPools)

        def audit(action: str, ident: str) -> None:
            _runs.audit(self.ctx, req, f"bulk_pools.{action}", extra={"name": ident})

        self.ctx.repos.pools.ensure_default()
        resp.media = _entities.bulk(self.ctx, ADAPTER, body, audit)


class PoolItem:
    roles = {"GET": Role.VIEWER, "PATCH": Role.OP, "DELETE": Role.OP}

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, pool_name: str) -> None:
        if pool_name == DEFAULT_POOL:
            self.ctx.repos.pools.ensure_default()
        found = self.ctx.repos.pools.get(pool_name)
        if found is None:
            raise _not_found(pool_name)
        resp.media = response(found.record, self.ctx.repos.pool_slots().get(pool_name))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, pool_name: str) -> None:
        body = _bodies.parse(req, _bodies.PoolPatchBody)
        if body.pool is not None and body.pool != pool_name:
            raise problem.bad_request("Invalid body, pool name from request body doesn't match uri parameter",
                                      field="body.pool")
        if pool_name == DEFAULT_POOL:
            self.ctx.repos.pools.ensure_default()
        mask = dto.update_mask(req, set(UPDATABLE) | {"pool", "name"})
        fields = (mask if mask is not None else set(body.model_fields_set)) - {"pool", "name"}
        if pool_name == DEFAULT_POOL and (mask is None or fields - DEFAULT_POOL_UPDATABLE):
            raise problem.bad_request("Only slots and included_deferred can be modified on Default Pool")
        updated = _entities.write_update(self.ctx, ADAPTER, pool_name, body, fields)
        _runs.audit(self.ctx, req, "patch_pool", extra={"name": pool_name, "fields": sorted(fields)})
        resp.media = response(updated.record, self.ctx.repos.pool_slots().get(pool_name))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, pool_name: str) -> None:
        _check_delete(pool_name)
        if not self.ctx.repos.pools.delete(pool_name):
            raise _not_found(pool_name)
        _runs.audit(self.ctx, req, "delete_pool", extra={"name": pool_name})
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: Any) -> None:
    app.add_route("/api/v2/pools", PoolCollection(ctx))
    app.add_route("/api/v2/pools/{pool_name}", PoolItem(ctx))
