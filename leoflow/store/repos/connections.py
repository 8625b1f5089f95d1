"""Connections (Airflow's ``/connections``): stored whole, password included; masking is the API's job."""

from __future__ import annotations

from leoflow.domain.records import Connection
from leoflow.store.repos.entities import EntityRepository


class ConnectionRepository(EntityRepository[Connection]):
    kind = "connections"
    record_type = Connection
    id_field = "connection_id"
    noun = "connection"
