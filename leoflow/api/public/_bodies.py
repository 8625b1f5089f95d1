"""Request bodies of the run-side endpoints, validated as strictly as Airflow's Pydantic models.

Why Pydantic: Airflow's bodies are Pydantic models with ``extra="forbid"``; mirroring them (names,
types, bounds, defaults, taken from the 3.3.2 spec) gives the same accept/reject decisions and
errors that name the field (``body.conf``, ``body.actions.0.entities.1.slots``). A body is read
whole with a size cap first (``leoflow.api.dto.json_body``), so an oversized or malformed body is
refused before anything runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import falcon
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from leoflow.api import dto, problem

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


TIState = Literal[
    "removed",
    "scheduled",
    "queued",
    "running",
    "success",
    "restarting",
    "failed",
    "up_for_retry",
    "up_for_reschedule",
    "upstream_failed",
    "skipped",
    "deferred",
    "awaiting_input",
]
RunState = Literal["queued", "running", "success", "failed"]
RunMutableState = Literal["queued", "success", "failed"]
Note = Annotated[StrictStr, Field(max_length=1000)]
NonNeg = Annotated[StrictInt, Field(ge=0)]


# --- DAG runs -------------------------------------------------------------------------------


class TriggerDAGRunPostBody(Strict):
    # Required but nullable in Airflow: the UI always sends it, scripts send null for "now".
    logical_date: AwareDatetime | None
    dag_run_id: StrictStr | None = None
    data_interval_start: AwareDatetime | None = None
    data_interval_end: AwareDatetime | None = None
    run_after: AwareDatetime | None = None
    conf: dict[str, Any] | None = None
    note: StrictStr | None = None
    partition_key: StrictStr | None = None


class DAGRunPatchBody(Strict):
    state: RunMutableState | None = None
    note: Note | None = None


class DAGRunClearBody(Strict):
    dry_run: StrictBool = True
    only_failed: StrictBool = False
    only_new: StrictBool = False
    run_on_latest_version: StrictBool | None = None
    note: Note | None = None


class _Ranges(Strict):
    run_after_gte: AwareDatetime | None = None
    run_after_gt: AwareDatetime | None = None
    run_after_lte: AwareDatetime | None = None
    run_after_lt: AwareDatetime | None = None
    logical_date_gte: AwareDatetime | None = None
    logical_date_gt: AwareDatetime | None = None
    logical_date_lte: AwareDatetime | None = None
    logical_date_lt: AwareDatetime | None = None
    start_date_gte: AwareDatetime | None = None
    start_date_gt: AwareDatetime | None = None
    start_date_lte: AwareDatetime | None = None
    start_date_lt: AwareDatetime | None = None
    end_date_gte: AwareDatetime | None = None
    end_date_gt: AwareDatetime | None = None
    end_date_lte: AwareDatetime | None = None
    end_date_lt: AwareDatetime | None = None
    duration_gte: float | None = None
    duration_gt: float | None = None
    duration_lte: float | None = None
    duration_lt: float | None = None


class DAGRunsBatchBody(_Ranges):
    order_by: StrictStr | None = None
    page_offset: NonNeg = 0
    page_limit: NonNeg = 100
    dag_ids: list[StrictStr] | None = None
    states: list[RunState | None] | None = None
    conf_contains: StrictStr | None = None


class BulkDAGRunBody(Strict):
    dag_run_id: StrictStr
    dag_id: StrictStr | None = None
    state: RunMutableState | None = None
    note: Note | None = None


class BulkDAGRunClearBody(DAGRunClearBody):
    dag_runs: list[BulkDAGRunBody] = Field(default_factory=list)


# --- task instances -------------------------------------------------------------------------


MARKABLE = ("success", "failed", "skipped")


class PatchTaskInstanceBody(Strict):
    new_state: StrictStr | None = None
    note: Note | None = None
    include_upstream: StrictBool = False
    include_downstream: StrictBool = False
    include_future: StrictBool = False
    include_past: StrictBool = False

    @field_validator("new_state", mode="before")
    @classmethod
    def _markable(cls, value: Any) -> Any:
        # Airflow: only success, failed and skipped may be set by hand; null is "should not be empty".
        if value is None:
            raise ValueError("'new_state' should not be empty")
        if not isinstance(value, str):
            return value
        if value.lower() not in MARKABLE:
            raise ValueError(f"'{value.lower()}' is not one of {list(MARKABLE)}")
        return value.lower()


class ClearTaskInstancesBody(Strict):
    dry_run: StrictBool = True
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None
    only_failed: StrictBool = True
    only_running: StrictBool = False
    reset_dag_runs: StrictBool = True
    task_ids: list[StrictStr | tuple[StrictStr, StrictInt]] | None = None
    dag_run_id: StrictStr | None = None
    include_upstream: StrictBool = False
    include_downstream: StrictBool = False
    include_future: StrictBool = False
    include_past: StrictBool = False
    run_on_latest_version: StrictBool | None = None
    prevent_running_task: StrictBool = False
    note: Note | None = None


class TaskInstancesBatchBody(_Ranges):
    dag_ids: list[StrictStr] | None = None
    dag_run_ids: list[StrictStr] | None = None
    task_ids: list[StrictStr] | None = None
    state: list[TIState | None] | None = None
    pool: list[StrictStr] | None = None
    queue: list[StrictStr] | None = None
    executor: list[StrictStr] | None = None
    page_offset: NonNeg = 0
    page_limit: NonNeg = 100
    order_by: StrictStr | None = None


class BulkTaskInstanceBody(PatchTaskInstanceBody):
    task_id: StrictStr
    map_index: StrictInt | None = None
    dag_id: StrictStr | None = None
    dag_run_id: StrictStr | None = None


# --- connections, variables, pools, xcom ----------------------------------------------------


class ConnectionBody(Strict):
    connection_id: Annotated[StrictStr, Field(max_length=200, pattern=r"^[\w.-]+$")]
    conn_type: StrictStr
    description: StrictStr | None = None
    host: StrictStr | None = None
    login: StrictStr | None = None
    schema_: StrictStr | None = Field(default=None, alias="schema")
    port: StrictInt | None = None
    password: StrictStr | None = None
    extra: StrictStr | None = None
    team_name: Annotated[StrictStr, Field(max_length=50)] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VariableBody(Strict):
    key: Annotated[StrictStr, Field(min_length=1, max_length=250)]
    value: JsonValue
    description: StrictStr | None = None
    team_name: Annotated[StrictStr, Field(max_length=50)] | None = None


class PoolBody(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    slots: Annotated[StrictInt, Field(ge=-1)]
    description: StrictStr | None = None
    include_deferred: StrictBool = False
    team_name: Annotated[StrictStr, Field(max_length=50)] | None = None


class PoolPatchBody(Strict):
    pool: StrictStr | None = None
    slots: Annotated[StrictInt, Field(ge=-1)] | None = None
    description: StrictStr | None = None
    include_deferred: StrictBool | None = None
    team_name: Annotated[StrictStr, Field(max_length=50)] | None = None


class XComCreateBody(Strict):
    key: Annotated[StrictStr, Field(min_length=1)]
    value: Any
    map_index: StrictInt = -1


class XComUpdateBody(Strict):
    value: Any
    map_index: StrictInt = -1


# --- bulk -----------------------------------------------------------------------------------

OnExistence = Literal["fail", "skip", "overwrite"]
OnNonExistence = Literal["fail", "skip"]


def bulk_models(entity: type[BaseModel]) -> type[BaseModel]:
    """``BulkBody_<Entity>_``: a list of create/update/delete actions, discriminated by ``action``."""

    class Create(Strict):
        action: Literal["create"]
        entities: list[entity]  # type: ignore[valid-type]
        action_on_existence: OnExistence = "fail"

    class Update(Strict):
        action: Literal["update"]
        entities: list[entity]  # type: ignore[valid-type]
        update_mask: list[StrictStr] | None = None
        action_on_non_existence: OnNonExistence = "fail"

    class Delete(Strict):
        action: Literal["delete"]
        entities: list[StrictStr | entity]  # type: ignore[valid-type]
        action_on_non_existence: OnNonExistence = "fail"

    class Body(Strict):
        actions: list[Annotated[Create | Update | Delete, Field(discriminator="action")]]

    Body.__name__ = f"BulkBody_{entity.__name__}_"
    return Body


BulkConnections = bulk_models(ConnectionBody)
BulkVariables = bulk_models(VariableBody)
BulkPools = bulk_models(PoolBody)
BulkDagRuns = bulk_models(BulkDAGRunBody)
BulkTaskInstances = bulk_models(BulkTaskInstanceBody)


# --- reading --------------------------------------------------------------------------------


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none", "any", "literal"})


def _is_union_label(part: str) -> bool:
    """Pydantic names the branch of a union in error locations (``str``, ``tuple[str, int]``, a model name)."""
    return part[:1].isupper() or "[" in part or part.startswith("function-") or part.lower() in _TYPE_LABELS


def _location(loc: tuple[Any, ...]) -> str:
    # Pydantic puts union branch / discriminator tags in the location; keep only real fields.
    parts = ["body"]
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(str(part))
        elif i >= 2 and loc[i - 2] == "actions" and isinstance(loc[i - 1], int):
            continue  # the discriminator tag of a bulk action ("create", "update", "delete")
        elif isinstance(part, str) and not _is_union_label(part):
            parts.append(part)
    return ".".join(parts)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = _location(tuple(first["loc"]))
        issue = problem.invalid(field, first["msg"])
        issue.extra["errors"] = [
            {"loc": _location(tuple(e["loc"])).split("."), "msg": e["msg"], "type": e["type"]} for e in errors
        ]
        if len(errors) > 1:
            issue.description = "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
        raise issue from None


def parse(req: falcon.Request, model: type[M], *, allow_empty: bool = False) -> M:
    """Read (415/413/400 from ``dto.json_body``) and validate (422 naming the field) a body."""
    if allow_empty and not req.content_length and req.content_type is None:
        return validate(model, {})
    return validate(model, read(req))


def read(req: falcon.Request) -> Any:
    """The JSON document of the request (size and content type checked by ``dto.json_body``)."""
    try:
        document = dto.json_body(req)
    except problem.Problem as exc:
        if exc.status_code != 400:
            raise
        # FastAPI (so Airflow) answers an unparsable body with 422 ``json_invalid``: the spec's status.
        raise problem.invalid("body", exc.description or "JSON decode error") from None
    # Kept so a store refusal later in the request can name the field at fault (problem.py).
    setattr(req.context, problem.BODY_DOCUMENT, document)
    return document


def fields_set(body: BaseModel) -> set[str]:
    """The fields the client actually sent: PATCH applies exactly these (``null`` included)."""
    return set(body.model_fields_set)
