"""Roles and how a resource declares what each of its methods needs.

The ladder is Airflow's simple auth manager's: VIEWER < USER < OP < ADMIN. Airflow's meaning:
viewers read DAGs, runs, logs, pools, config views; users also write DAGs/runs/TIs (trigger,
pause, clear, mark); ops also manage pools, connections and variables (connections and
variables need OP even to read, because they hold secrets); admins do everything (users).

How a resource declares it (checked by ``leoflow.api.middleware.AuthMiddleware``)::

    class DagResource:
        roles = {"GET": Role.VIEWER, "PATCH": Role.USER, "DELETE": Role.USER}

    class HealthResource:
        public = True          # no authentication at all (health, login only)

A method missing from ``roles`` defaults to VIEWER for GET/HEAD and ADMIN for anything else, so a
forgotten declaration fails closed for writes. Responders that serve several routes with
different needs may use ``roles_for(req)`` instead: a method ``def roles_for(self, req) -> Role``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Role(IntEnum):
    VIEWER = 0
    USER = 1
    OP = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; expected one of viewer, user, op, admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_NAMES = tuple(r.label for r in Role)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_role(resource: Any, method: str, req: Any = None) -> Role | None:
    """The role a request needs, or None when the resource is public."""
    if resource is None or getattr(resource, "public", False):
        return None
    dynamic = getattr(resource, "roles_for", None)
    if callable(dynamic):
        role = dynamic(req)
        if role is not None:
            return Role(role)
    declared = getattr(resource, "roles", None) or {}
    if method in declared:
        return Role(declared[method])
    return Role.VIEWER if method in _READ_METHODS else Role.ADMIN
