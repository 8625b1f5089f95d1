"""Variables (Airflow's ``/variables``): stored in clear; the API masks sensitive keys as Airflow does."""

from __future__ import annotations

from leoflow.domain.records import Variable
from leoflow.store.repos.entities import EntityRepository


class VariableRepository(EntityRepository[Variable]):
    kind = "variables"
    record_type = Variable
    id_field = "key"
    noun = "variable"
