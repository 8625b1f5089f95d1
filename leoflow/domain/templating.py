"""Jinja2 rendering of a task's ``command``, ``args`` and ``env`` with Airflow's template context.

Templates come from DAG authors, so they are rendered in Jinja's ``SandboxedEnvironment`` (no
attribute access to internals, no arbitrary calls) with ``StrictUndefined`` as Airflow does: a
typo in ``{{ ds_nodsh }}`` fails the try with a message naming the task and the field, instead
of running a command with an empty argument.

The context mirrors Airflow 3's: ``ds``, ``ds_nodash``, ``ts``, ``ts_nodash``,
``ts_nodash_with_tz``, ``logical_date``, ``data_interval_start``/``end``, ``run_id``,
``dag_run`` (with ``conf``), ``params`` (DAG defaults overridden by the run's conf, Airflow's
``dag_run_conf_overrides_params``), ``ti``/``task_instance`` (``try_number``, ``xcom_pull``),
``dag``, ``task``, ``macros`` and ``var``. As in Airflow 3, a run without a logical date has no
``ds``/``ts``/``logical_date`` keys. XCom and Variable reads go through callables the caller
passes in, so this module does no I/O.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError

from leoflow.domain.dag import DAG, Task
from leoflow.domain.records import DagRun
from leoflow.domain.template_limits import DEFAULT_LIMITS, BoundedEnvironment, RenderLimits, render_bounded

XComReader = Callable[[str, str], Any]  # (task_id, key) -> value or None
VariableReader = Callable[[str], str | None]

_MARKERS = ("{{", "{%", "{#")


class RenderError(ValueError):
    """A template failed; the message names the task and the field (``command[2]``, ``env.FOO``)."""


def ds_add(ds: str, days: int) -> str:
    """Airflow's ``macros.ds_add``: shift a ``YYYY-MM-DD`` date by ``days``."""
    if not days:
        return str(ds)
    shifted = datetime.strptime(str(ds), "%Y-%m-%d") + timedelta(days=days)
    return shifted.strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """Airflow's ``macros.ds_format``: reparse a date string into another format."""
    return datetime.strptime(str(ds), input_format).strftime(output_format)


@dataclass(frozen=True)
class _Macros:
    """Airflow's ``macros`` minus ``time``: rendering runs in the scheduler, so no ``sleep``."""

    datetime: type = datetime
    timedelta: type = timedelta
    date: type = date
    uuid: Any = uuid
    random: Any = random.random
    json: Any = json
    ds_add: Callable[[str, int], str] = ds_add
    ds_format: Callable[[str, str, str], str] = ds_format


MACROS = _Macros()


class _TI:
    """What templates see as ``ti``/``task_instance``: identity, try number and ``xcom_pull``."""

    def __init__(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int,
                 xcom: XComReader | None) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.try_number = try_number
        self.map_index = map_index
        self._xcom = xcom

    def xcom_pull(
        self,
        task_ids: str | Sequence[str] | None = None,
        key: str = "return_value",
        default: Any = None,
        **_ignored: Any,
    ) -> Any:
        """Airflow 3: one id gives one value, a list gives a list; no id means this task."""
        single = task_ids is None or isinstance(task_ids, str)
        ids = [self.task_id] if task_ids is None else [task_ids] if isinstance(task_ids, str) else list(task_ids)
        values = []
        for tid in ids:
            value = self._xcom(str(tid), key) if self._xcom is not None else None
            values.append(default if value is None else value)
        return values[0] if single else values


class _VarAccessor:
    """``var.value.name`` / ``var.json.name`` / ``var.value.get("name", default)`` like Airflow."""

    def __init__(self, reader: VariableReader | None, as_json: bool) -> None:
        self._reader = reader
        self._json = as_json

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._reader(key) if self._reader is not None else None
        if raw is None:
            return default
        return json.loads(raw) if self._json else raw

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(f"Variable {key} does not exist")
        return value


_MISSING = object()


class _Var:
    def __init__(self, reader: VariableReader | None) -> None:
        self.value = _VarAccessor(reader, as_json=False)
        self.json = _VarAccessor(reader, as_json=True)


@dataclass(frozen=True)
class _DagRunView:
    dag_id: str
    run_id: str
    run_type: str
    conf: Mapping[str, Any]
    logical_date: datetime | None
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    run_after: datetime
    start_date: datetime | None
    clear_number: int


@lru_cache(maxsize=1)
def _env() -> BoundedEnvironment:
    return BoundedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _env().from_string(source)


def build_context(
    dag: DAG,
    task: Task,
    run: DagRun,
    *,
    try_number: int,
    map_index: int = -1,
    xcom: XComReader | None = None,
    variables: VariableReader | None = None,
) -> dict[str, Any]:
    params = {name: p.default for name, p in dag.params.items()}
    params.update(run.conf or {})
    ctx: dict[str, Any] = {
        "dag": _DagView(dag.dag_id),
        "task": _TaskView(task.task_id),
        "run_id": run.run_id,
        "dag_run": _DagRunView(
            dag_id=run.dag_id,
            run_id=run.run_id,
            run_type=str(run.run_type.value),
            conf=dict(run.conf or {}),
            logical_date=run.logical_date,
            data_interval_start=run.data_interval_start,
            data_interval_end=run.data_interval_end,
            run_after=run.run_after,
            start_date=run.start_date,
            clear_number=run.clear_number,
        ),
        "params": params,
        "macros": MACROS,
        "var": _Var(variables),
        "data_interval_start": run.data_interval_start,
        "data_interval_end": run.data_interval_end,
    }
    ti = _TI(run.dag_id, run.run_id, task.task_id, try_number, map_index, xcom)
    ctx["ti"] = ctx["task_instance"] = ti
    if run.logical_date is not None:
        ld = run.logical_date
        ds = ld.strftime("%Y-%m-%d")
        ts = ld.isoformat()
        ctx.update(
            logical_date=ld,
            ds=ds,
            ds_nodash=ds.replace("-", ""),
            ts=ts,
            ts_nodash=ld.strftime("%Y%m%dT%H%M%S"),
            ts_nodash_with_tz=ts.replace("-", "").replace(":", ""),
            task_instance_key_str=f"{dag.dag_id}__{task.task_id}__{ds.replace('-', '')}",
        )
    return ctx


@dataclass(frozen=True)
class _DagView:
    dag_id: str


@dataclass(frozen=True)
class _TaskView:
    task_id: str


def render_text(source: str, context: Mapping[str, Any], limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render one field within ``limits`` (output size and work); over them is a ``TemplateError``."""
    if not any(marker in source for marker in _MARKERS):
        return source
    return render_bounded(_compile(source), dict(context), limits)


@dataclass(frozen=True)
class Rendered:
    command: tuple[str, ...]
    env: Mapping[str, str]


def render_task(
    dag: DAG,
    task: Task,
    run: DagRun,
    *,
    try_number: int,
    map_index: int = -1,
    xcom: XComReader | None = None,
    variables: VariableReader | None = None,
    limits: RenderLimits = DEFAULT_LIMITS,
) -> Rendered:
    """Render ``command + args`` (one argv) and ``env`` for one try; raises ``RenderError``.

    Each field is rendered within ``limits`` (output size, operation count): a template that
    would run for minutes or fill memory fails the try, naming the task and the field.
    """
    context = build_context(
        dag, task, run, try_number=try_number, map_index=map_index, xcom=xcom, variables=variables
    )

    def one(field: str, source: str) -> str:
        try:
            return render_text(source, context, limits)
        except TemplateError as exc:
            raise RenderError(f"task {task.task_id!r}: cannot render {field}: {exc}") from exc
        except RecursionError as exc:  # a macro calling itself
            raise RenderError(f"task {task.task_id!r}: cannot render {field}: recursion too deep") from exc
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise RenderError(f"task {task.task_id!r}: cannot render {field}: {exc}") from exc

    command = tuple(one(f"command[{i}]", part) for i, part in enumerate(task.command))
    args = tuple(one(f"args[{i}]", part) for i, part in enumerate(task.args))
    env = {key: one(f"env.{key}", value) for key, value in task.env.items()}
    return Rendered(command=command + args, env=env)
