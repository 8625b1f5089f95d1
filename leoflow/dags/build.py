"""Turn a marked document (from YAML or from the Python SDK) into a validated ``DAG``.

One builder for both authoring formats, so a field means the same thing and fails with the same
message whichever format the author used. Every problem found is collected with the position of
the offending key or value; the builder keeps going after an error so one run of
``leoflow dags validate`` shows all of them.

The key sets below are the whole format: a key that is not listed is an error, and every listed
key lands in a field of the model (nothing is accepted and then ignored). The published JSON
Schema (``dag.schema.json``) is tested to agree with them.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from leoflow.dags.nodes import Node
from leoflow.domain.dag import DAG, DEFAULT_OWNER, Param, Resources, Task
from leoflow.domain.durations import EXPECTED as DURATION_EXPECTED
from leoflow.domain.durations import DurationError, parse_duration
from leoflow.domain.graph import find_cycle
from leoflow.domain.params import param_schema_errors
from leoflow.domain.schedule import ScheduleError, parse_schedule
from leoflow.domain.states import TriggerRule

DAG_KEYS = (
    "dag_id", "description", "schedule", "start_date", "end_date", "timezone", "catchup",
    "max_active_runs", "max_active_tasks", "dagrun_timeout", "tags", "owner", "params",
    "default_args", "doc_md", "is_paused_upon_creation", "tasks",
)
TASK_KEYS = (
    "task_id", "image", "command", "args", "env", "upstream", "trigger_rule", "retries", "retry_delay",
    "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "pool", "pool_slots",
    "priority_weight", "queue", "resources", "connections", "variables", "owner", "doc_md",
    "is_setup", "is_teardown", "driver",
)
# What default_args may set: every per-task setting except identity, edges and setup/teardown roles.
DEFAULT_ARG_KEYS = tuple(k for k in TASK_KEYS if k not in ("task_id", "upstream", "is_setup", "is_teardown"))
RESOURCE_KEYS = ("cpu", "memory", "memory_max")
PARAM_KEYS = ("default", "description")
# JSON-schema keywords a param may carry; all of them are enforced by resolve_params.
PARAM_SCHEMA_KEYS = (
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "items", "minItems", "maxItems", "uniqueItems",
    "properties", "required", "additionalProperties", "minProperties", "maxProperties", "title",
    "examples", "oneOf", "anyOf", "allOf", "not",
)
DRIVERS = ("docker", "exec", "raw_exec")
# Ids name directories (task logs) and path segments: "." / ".." (any all-dot id) would traverse.
ID_PATTERN = r"^(?!\.+$)[A-Za-z0-9_.-]{1,250}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TAG_MAX_LEN = 100
_ID = re.compile(ID_PATTERN)
_ONLY_DOTS = re.compile(r"^\.+$")
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_JINJA = jinja2.Environment(autoescape=False)  # noqa: S701 - commands are argv, not HTML; parse only


@dataclass(frozen=True)
class Issue:
    line: int
    column: int
    message: str


class FieldError(Exception):
    """Raised by a converter; ``node`` narrows the position to a nested value when known."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime | date):
        return f"the date {value.isoformat()}"
    return repr(value)


# ---- converters: Node -> model value, or FieldError -------------------------------------------

def to_str(node: Node) -> str:
    if not isinstance(node.value, str):
        raise FieldError(f"expected a string, got {describe(node.value)}")
    return node.value


def to_nonempty_str(node: Node) -> str:
    text = to_str(node)
    if not text.strip():
        raise FieldError("must not be empty")
    return text


def to_id(node: Node) -> str:
    text = to_str(node)
    if _ONLY_DOTS.match(text):
        raise FieldError(f"must not be '.', '..' or only dots (ids name directories), got {text!r}")
    if not _ID.match(text):
        raise FieldError(f"expected 1-250 letters, digits, '_', '.' or '-', got {text!r}")
    return text


def to_bool(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise FieldError(f"expected true or false, got {describe(node.value)}")
    return node.value


def to_int(minimum: int | None = None) -> Callable[[Node], int]:
    def convert(node: Node) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise FieldError(f"expected an integer{bound}, got {describe(value)}")
        if minimum is not None and value < minimum:
            raise FieldError(f"expected an integer >= {minimum}, got {value}")
        return value

    return convert


def to_duration(node: Node) -> timedelta:
    value = node.value
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise FieldError(f"expected {DURATION_EXPECTED}, got {describe(value)}")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise FieldError(str(exc)) from None


def to_optional(convert: Callable[[Node], Any]) -> Callable[[Node], Any]:
    def wrapped(node: Node) -> Any:
        return None if node.value is None else convert(node)

    return wrapped


def to_datetime(node: Node) -> datetime | date:
    value = node.value
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise FieldError(f"expected a date or datetime like 2024-01-01 or 2024-01-01T06:00:00Z, got {describe(value)}")


def to_timezone(node: Node) -> str:
    name = to_str(node)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FieldError(f"unknown timezone {name!r} (expected an IANA name like 'UTC' or 'Europe/Berlin')") from None
    return name


def to_schedule(node: Node) -> str | None:
    if node.value is not None and not isinstance(node.value, str):
        raise FieldError(f"expected a cron expression, preset, duration or null, got {describe(node.value)}")
    try:
        return parse_schedule(node.value).text
    except ScheduleError as exc:
        raise FieldError(str(exc)) from None


def check_template(text: str) -> None:
    if "{{" in text or "{%" in text or "{#" in text:
        problem = _template_problem(text)
        if problem is not None:
            raise FieldError(problem)


@lru_cache(maxsize=8192)
def _template_problem(text: str) -> str | None:
    """Parsing is most of a YAML file's load time; templates repeat across a repo's DAGs."""
    try:
        _JINJA.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


def to_list(
    item: Callable[[Node], Any], *, unique: bool = False, allow_scalar: bool = False
) -> Callable[[Node], tuple[Any, ...]]:
    def convert(node: Node) -> tuple[Any, ...]:
        items = node.value
        if allow_scalar and isinstance(items, str):
            items = [node]
        elif not isinstance(items, list):
            raise FieldError(f"expected a list, got {describe(items)}")
        out: list[Any] = []
        for index, child in enumerate(items):
            try:
                value = item(child)
            except FieldError as exc:
                raise FieldError(f"item {index + 1}: {exc.message}", exc.node or child) from None
            if unique and value in out:
                raise FieldError(f"item {index + 1}: duplicate {value!r}", child)
            out.append(value)
        return tuple(out)

    return convert


def to_arg(node: Node) -> str:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldError(f"expected a string, got {describe(value)} (quote it)")
    text = str(value)
    check_template(text)
    return text


def to_env(node: Node) -> dict[str, str]:
    if not node.is_mapping:
        raise FieldError(f"expected a mapping of variable names to strings, got {describe(node.value)}")
    env: dict[str, str] = {}
    for name, child in node.value.items():
        line, column = node.key_mark(name)
        if not _ENV_NAME.match(name):
            raise FieldError(f"invalid variable name {name!r} (letters, digits and '_', not starting with a digit)",
                             Node(name, line, column))
        value = child.value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise FieldError(f"{name}: expected a string, got {describe(value)} (quote it)", child)
        text = str(value)
        try:
            check_template(text)
        except FieldError as exc:
            raise FieldError(f"{name}: {exc.message}", child) from None
        env[name] = text
    return env


def to_trigger_rule(node: Node) -> TriggerRule:
    try:
        return TriggerRule(to_str(node))
    except ValueError:
        rules = [r.value for r in TriggerRule]
        close = difflib.get_close_matches(str(node.value), rules, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise FieldError(f"unknown trigger rule {node.value!r} ({hint}expected one of: {', '.join(rules)})") from None


def to_driver(node: Node) -> str:
    value = to_str(node)
    if value not in DRIVERS:
        raise FieldError(f"unknown driver {value!r} (expected one of: {', '.join(DRIVERS)})")
    return value


def unknown_key_message(key: str, allowed: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{key}'{where}{hint}"


def to_resources(node: Node) -> Resources:
    if not node.is_mapping:
        raise FieldError(f"expected a mapping with cpu (MHz) and memory (MiB), got {describe(node.value)}")
    values: dict[str, int | None] = {}
    for key, child in node.value.items():
        if key not in RESOURCE_KEYS:
            line, column = node.key_mark(key)
            raise FieldError(unknown_key_message(key, RESOURCE_KEYS, " in resources"), Node(key, line, column))
        try:
            values[key] = to_optional(to_int(1))(child) if key == "memory_max" else to_int(1)(child)
        except FieldError as exc:
            raise FieldError(f"resources.{key}: {exc.message}", child) from None
    resources = Resources(**values)  # type: ignore[arg-type]
    if resources.memory_max is not None and resources.memory_max < resources.memory:
        raise FieldError(f"resources.memory_max ({resources.memory_max}) must be >= memory ({resources.memory})")
    return resources


TASK_CONVERTERS: dict[str, Callable[[Node], Any]] = {
    "task_id": to_id,
    "image": to_optional(to_nonempty_str),
    "command": to_list(to_arg),
    "args": to_list(to_arg),
    "env": to_env,
    "upstream": to_list(to_id, unique=True, allow_scalar=True),
    "trigger_rule": to_trigger_rule,
    "retries": to_int(0),
    "retry_delay": to_duration,
    "retry_exponential_backoff": to_bool,
    "max_retry_delay": to_optional(to_duration),
    "execution_timeout": to_optional(to_duration),
    "pool": to_id,
    "pool_slots": to_int(1),
    "priority_weight": to_int(),
    "queue": to_id,
    "resources": to_resources,
    "connections": to_list(to_id, unique=True),
    "variables": to_list(to_nonempty_str, unique=True),
    "owner": to_nonempty_str,
    "doc_md": to_optional(to_str),
    "is_setup": to_bool,
    "is_teardown": to_bool,
    "driver": to_driver,
}


def json_value(value: Any) -> Any:
    """A converted task setting in the JSON form that ``DAG.default_args`` keeps."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds == int(seconds) else seconds
    if isinstance(value, Resources):
        return {"cpu": value.cpu, "memory": value.memory, "memory_max": value.memory_max}
    if isinstance(value, TriggerRule):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(sorted(value.items()))
    return value


def json_safe(value: Any) -> Any:
    """Param values travel as JSON (API, UI form, serialized DAG): YAML dates become ISO text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(f"{value} is not a JSON value")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


# ---- the builder -------------------------------------------------------------------------------

class _Builder:
    def __init__(self, fileloc: str) -> None:
        self.fileloc = fileloc
        self.issues: list[Issue] = []

    def error(self, node: Node | tuple[int, int], message: str) -> None:
        line, column = (node.line, node.column) if isinstance(node, Node) else node
        self.issues.append(Issue(line, column, message))

    def fields(self, node: Node, allowed: tuple[str, ...], converters: Mapping[str, Callable[[Node], Any]],
               where: str, prefix: str = "") -> dict[str, Any]:
        """Convert every key of a mapping node; unknown keys and bad values become issues.

        Allowed keys without a converter are structured sections the caller handles itself."""
        out: dict[str, Any] = {}
        for key, child in node.value.items():
            if key in allowed and key not in converters:
                continue
            if key not in allowed:
                self.error(node.key_mark(key), prefix + unknown_key_message(key, allowed, where))
                continue
            try:
                out[key] = converters[key](child)
            except FieldError as exc:
                self.error(exc.node or child, f"{prefix}{key}: {exc.message}")
        return out

    def build(self, root: Node) -> DAG | None:
        if not root.is_mapping:
            self.error(root, f"a DAG file must be a mapping with dag_id and tasks, got {describe(root.value)}")
            return None
        dag_converters: dict[str, Callable[[Node], Any]] = {
            "dag_id": to_id,
            "description": to_optional(to_str),
            "schedule": to_schedule,
            "start_date": to_optional(to_datetime),
            "end_date": to_optional(to_datetime),
            "timezone": to_timezone,
            "catchup": to_bool,
            "max_active_runs": to_int(1),
            "max_active_tasks": to_int(1),
            "dagrun_timeout": to_optional(to_duration),
            "tags": to_list(self._tag, unique=True),
            "owner": to_nonempty_str,
            "doc_md": to_optional(to_str),
            "is_paused_upon_creation": to_bool,
        }
        values = self.fields(root, DAG_KEYS, dag_converters, "")
        for key in ("dag_id", "tasks"):
            if key not in root.value:
                self.error(root, f"missing required key '{key}'")
        params = self._params(root.value["params"]) if "params" in root.value else {}
        defaults = self._default_args(root.value["default_args"]) if "default_args" in root.value else {}
        self._dates(root, values)

        owner = values.get("owner") or defaults.get("owner") or DEFAULT_OWNER
        tasks = self._tasks(root.value["tasks"], defaults, owner) if "tasks" in root.value else {}
        if self.issues or "dag_id" not in values:
            return None
        return DAG(
            dag_id=values["dag_id"],
            tasks=tasks,
            description=values.get("description"),
            schedule=values.get("schedule"),
            start_date=values.get("start_date"),
            end_date=values.get("end_date"),
            timezone=values.get("timezone", "UTC"),
            catchup=values.get("catchup", False),
            max_active_runs=values.get("max_active_runs", 16),
            max_active_tasks=values.get("max_active_tasks", 16),
            dagrun_timeout=values.get("dagrun_timeout"),
            tags=values.get("tags", ()),
            owner=owner,
            params=params,
            default_args={k: json_value(v) for k, v in sorted(defaults.items())},
            doc_md=values.get("doc_md"),
            is_paused_upon_creation=values.get("is_paused_upon_creation", True),
            fileloc=self.fileloc,
        )

    @staticmethod
    def _tag(node: Node) -> str:
        text = to_nonempty_str(node)
        if len(text) > TAG_MAX_LEN:
            raise FieldError(f"a tag is at most {TAG_MAX_LEN} characters, got {len(text)}")
        return text

    def _dates(self, root: Node, values: dict[str, Any]) -> None:
        """Naive dates are in the DAG's timezone (Airflow's rule); the model keeps UTC."""
        tz = ZoneInfo(values.get("timezone", "UTC"))
        for key in ("start_date", "end_date"):
            value = values.get(key)
            if value is None:
                continue
            if not isinstance(value, datetime):
                value = datetime(value.year, value.month, value.day)
            if value.tzinfo is None:
                value = value.replace(tzinfo=tz)
            values[key] = value.astimezone(UTC)
        start, end = values.get("start_date"), values.get("end_date")
        if start is not None and end is not None and end < start:
            self.error(root.key_mark("end_date"), "end_date: must not be before start_date")
        schedule = values.get("schedule")
        if values.get("catchup") and start is None and parse_schedule(schedule).is_periodic:
            self.error(root.key_mark("catchup"), "catchup: true needs a start_date to catch up from")

    def _params(self, node: Node) -> dict[str, Param]:
        if not node.is_mapping:
            self.error(node, f"params: expected a mapping of param names, got {describe(node.value)}")
            return {}
        params: dict[str, Param] = {}
        allowed = PARAM_KEYS + PARAM_SCHEMA_KEYS
        for name, child in node.value.items():
            if not child.is_mapping:  # shorthand: a plain default, no constraints
                try:
                    params[name] = Param(name=name, default=json_safe(child.plain()))
                except FieldError as exc:
                    self.error(child, f"params.{name}: {exc.message}")
                continue
            bad = False
            for key in child.value:
                if key not in allowed:
                    self.error(child.key_mark(key),
                               f"params.{name}: " + unknown_key_message(key, allowed, "")
                               + " (write a mapping default as 'default: {...}')")
                    bad = True
            description = child.value.get("description")
            if description is not None and not isinstance(description.value, str):
                self.error(description,
                           f"params.{name}.description: expected a string, got {describe(description.value)}")
                bad = True
            if bad:
                continue
            try:
                schema = {k: json_safe(v.plain()) for k, v in child.value.items() if k in PARAM_SCHEMA_KEYS}
                default = json_safe(child.value["default"].plain()) if "default" in child.value else None
            except FieldError as exc:
                self.error(child, f"params.{name}: {exc.message}")
                continue
            if description is not None:
                schema["description"] = description.value
            param = Param(name=name, default=default, schema=schema,
                          description=description.value if description is not None else None)
            for problem in param_schema_errors(param):
                self.error(child, f"params.{name}: {problem}")
            params[name] = param
        return params

    def _default_args(self, node: Node) -> dict[str, Any]:
        if not node.is_mapping:
            self.error(node, f"default_args: expected a mapping, got {describe(node.value)}")
            return {}
        return self.fields(node, DEFAULT_ARG_KEYS, TASK_CONVERTERS, " in default_args", "default_args: ")

    def _tasks(self, node: Node, defaults: dict[str, Any], owner: str) -> dict[str, Task]:
        if not node.is_sequence:
            self.error(node, f"tasks: expected a list of tasks, got {describe(node.value)}")
            return {}
        if not node.value:
            self.error(node, "tasks: a DAG needs at least one task")
            return {}
        tasks: dict[str, Task] = {}
        seen: dict[str, Node] = {}
        upstream_nodes: dict[str, Node] = {}
        for index, child in enumerate(node.value):
            if not child.is_mapping:
                self.error(child, f"tasks: item {index + 1}: expected a task mapping, got {describe(child.value)}")
                continue
            name = child.value.get("task_id")
            label = f"task '{name.value}': " if name is not None and isinstance(name.value, str) else \
                f"task {index + 1}: "
            values = self.fields(child, TASK_KEYS, TASK_CONVERTERS, "", label)
            if "task_id" not in child.value:
                self.error(child, f"{label}missing required key 'task_id'")
                continue
            if "task_id" not in values:
                continue
            task_id = values["task_id"]
            if task_id in seen:
                self.error(name or child, f"duplicate task_id '{task_id}' (first at line {seen[task_id].line})")
                continue
            seen[task_id] = child
            if "upstream" in child.value:
                upstream_nodes[task_id] = child.value["upstream"]
            merged = {**defaults, **values}
            merged.setdefault("owner", owner)
            given = set(child.value) | set(defaults)
            if "command" not in given and "image" not in given:
                self.error(child, f"{label}needs a command (or an image to run with its default entrypoint)")
            if merged.get("is_setup") and merged.get("is_teardown"):
                self.error(child, f"{label}cannot be both is_setup and is_teardown")
            if "upstream" in merged:
                merged["upstream"] = frozenset(merged["upstream"])
            try:
                tasks[task_id] = Task(**merged)
            except TypeError as exc:  # only reachable if the key sets and the model drift apart
                self.error(child, f"{label}{exc}")
        self._edges(tasks, upstream_nodes, seen)
        return tasks

    def _edges(self, tasks: dict[str, Task], upstream_nodes: dict[str, Node], seen: dict[str, Node]) -> None:
        for task_id, task in tasks.items():
            for up in sorted(task.upstream):
                if up not in tasks and up not in seen:
                    where = upstream_nodes.get(task_id)
                    item = next((n for n in (where.value if where and where.is_sequence else [where] if where else [])
                                 if n is not None and n.value == up), where)
                    self.error(item or seen[task_id],
                               f"task '{task_id}': upstream '{up}' is not a task of this DAG")
        edges = {t: [u for u in task.upstream if u in tasks] for t, task in tasks.items()}
        cycle = find_cycle(edges)
        if cycle is not None:
            # a -> b in the cycle means b depends on a; report at the task that closes it.
            self.error(seen[cycle[0]], "cycle in task dependencies: " + " -> ".join(cycle))


def build_dag(root: Node, fileloc: str) -> tuple[DAG | None, list[Issue]]:
    """Build and validate; returns the DAG (None if there was any issue) and the issues in file order."""
    builder = _Builder(fileloc)
    dag = builder.build(root)
    issues = sorted(builder.issues, key=lambda i: (i.line, i.column))
    return (dag if not issues else None), issues
