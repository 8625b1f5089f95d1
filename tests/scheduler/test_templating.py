"""Jinja rendering of command/args/env with Airflow's context, sandboxed, errors naming task and field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from leoflow.domain.dag import DAG, Param, Task
from leoflow.domain.records import DagRun
from leoflow.domain.states import DagRunState, DagRunType
from leoflow.domain.templating import RenderError, ds_add, ds_format, render_task

LD = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def run(**kw: Any) -> DagRun:
    base: dict[str, Any] = dict(dag_id="d", run_id="scheduled__2026-03-04T05:06:07+00:00",
                                run_type=DagRunType.SCHEDULED, state=DagRunState.RUNNING, run_after=LD,
                                dag_version_number=1, logical_date=LD,
                                data_interval_start=LD, data_interval_end=LD, conf={"who": "conf"})
    base.update(kw)
    return DagRun(**base)


def dag(task: Task, **kw: Any) -> DAG:
    return DAG("d", {task.task_id: task}, **kw)


def test_airflow_variables() -> None:
    task = Task("t", command=("echo", "{{ ds }}", "{{ ds_nodash }}", "{{ ts }}", "{{ ts_nodash }}",
                              "{{ ts_nodash_with_tz }}", "{{ run_id }}", "{{ ti.try_number }}",
                              "{{ task_instance.task_id }}", "{{ dag.dag_id }}", "{{ task.task_id }}",
                              "{{ logical_date.year }}", "{{ data_interval_start.month }}",
                              "{{ data_interval_end.day }}", "{{ task_instance_key_str }}"))
    out = render_task(dag(task), task, run(), try_number=3)
    assert out.command == ("echo", "2026-03-04", "20260304", "2026-03-04T05:06:07+00:00", "20260304T050607",
                           "20260304T050607+0000", "scheduled__2026-03-04T05:06:07+00:00", "3", "t", "d", "t",
                           "2026", "3", "4", "d__t__20260304")


def test_params_conf_and_macros() -> None:
    task = Task("t", command=("x",), args=("{{ params.size }}", "{{ params.mode }}", "{{ dag_run.conf['who'] }}",
                                            "{{ macros.ds_add(ds, -3) }}",
                                            "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}",
                                            "{{ (logical_date + macros.timedelta(days=1)).strftime('%Y%m%d') }}",
                                            "{{ macros.datetime(2020, 1, 1).year }}"),
                env={"SIZE": "{{ params.size * 2 }}", "PLAIN": "no template"})
    d = dag(task, params={"size": Param("size", 5), "mode": Param("mode", "fast")})
    out = render_task(d, task, run(conf={"mode": "slow", "who": "me"}), try_number=1)
    assert out.command == ("x", "5", "slow", "me", "2026-03-01", "04/03/2026", "20260305", "2020")
    assert out.env == {"SIZE": "10", "PLAIN": "no template"}


def test_xcom_pull_and_var() -> None:
    seen: list[tuple[str, str]] = []

    def xcom(task_id: str, key: str) -> Any:
        seen.append((task_id, key))
        return {"up": {"rows": 7}, "other": [1, 2]}.get(task_id)

    task = Task("t", command=("{{ ti.xcom_pull(task_ids='up')['rows'] }}",
                              "{{ ti.xcom_pull(task_ids=['up', 'other'])[1][0] }}",
                              "{{ ti.xcom_pull(task_ids='missing', default='none') }}",
                              "{{ var.value.region }}", "{{ var.json.cfg.k }}", "{{ var.value.get('nope', 'dflt') }}"))
    variables = {"region": "eu", "cfg": '{"k": "v"}'}
    out = render_task(dag(task), task, run(), try_number=1, xcom=xcom, variables=variables.get)
    assert out.command == ("7", "1", "none", "eu", "v", "dflt")
    assert ("up", "return_value") in seen


def test_run_without_logical_date_has_no_ds() -> None:
    task = Task("t", command=("{{ ds }}",))
    with pytest.raises(RenderError, match=r"task 't': cannot render command\[0\]: 'ds' is undefined"):
        render_task(dag(task), task, run(logical_date=None), try_number=1)


def test_errors_name_task_and_field() -> None:
    task = Task("t", command=("ok",), env={"BAD": "{{ nope }}"})
    with pytest.raises(RenderError, match=r"task 't': cannot render env\.BAD: 'nope' is undefined"):
        render_task(dag(task), task, run(), try_number=1)
    syntax = Task("t", args=("{{ unclosed",))
    with pytest.raises(RenderError, match=r"args\[0\]"):
        render_task(dag(syntax), syntax, run(), try_number=1)
    missing_var = Task("t", command=("{{ var.value.absent }}",))
    with pytest.raises(RenderError, match="absent"):
        render_task(dag(missing_var), missing_var, run(), try_number=1)


def test_sandbox_blocks_internals() -> None:
    task = Task("t", command=("{{ ti.__class__.__mro__ }}",))
    with pytest.raises(RenderError, match="cannot render command"):
        render_task(dag(task), task, run(), try_number=1)
    reach = Task("t", command=("{{ ti._xcom }}",))
    with pytest.raises(RenderError):
        render_task(dag(reach), reach, run(), try_number=1)


def test_macro_helpers() -> None:
    assert ds_add("2026-01-31", 1) == "2026-02-01"
    assert ds_add("2026-01-31", 0) == "2026-01-31"
    assert ds_format("20260131", "%Y%m%d", "%Y-%m-%d") == "2026-01-31"


@pytest.mark.parametrize(("template", "why"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "does too much work"),
    ("{{ 'x' * 1000000000 }}", "would be 1000000000 long"),
    ("{% set a = 'x' * 200000 %}{{ a ~ a }}", "concatenation would be 400000 long"),
    ("{{ 'x'|center(1000000000) }}", "filter 'center' would be 1000000000 long"),
    ("{{ ('x' * 200000).replace('x', 'xxxxxxxxxx') }}", "replace() would be 2000000 long"),
    ("{{ '{:>{w}}'.format(1, w=1000000000) }}", "format() would be 1000000000 long"),
    ("{{ '%1000000000d' % 1 }}", "a width or precision of a million or more"),
    ("{{ 2 ** 100000000 }}", "'**' would be"),
    ("{% for i in range(100000) %}{{ i }}{% endfor %}", "the rendered text would be 262145 long"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion too deep"),
])
def test_a_runaway_template_fails_naming_task_field_and_limit(template: str, why: str) -> None:
    task = Task("t", command=("echo",), env={"OUT": template})
    with pytest.raises(RenderError) as err:
        render_task(dag(task), task, run(), try_number=1)
    assert str(err.value).startswith("task 't': cannot render env.OUT: ") and why in str(err.value)


def test_limits_are_per_field_and_can_be_chosen() -> None:
    from leoflow.domain.template_limits import RenderLimits

    task = Task("t", command=("echo", "{{ 'x' * 200000 }}", "{{ 'y' * 200000 }}"),
                env={"LOOP": "{% for i in range(3) %}{{ loop.index }}{% else %}none{% endfor %}"})
    out = render_task(dag(task), task, run(), try_number=1)  # 2 x 200 KB: each field is under its cap
    assert [len(c) for c in out.command] == [4, 200000, 200000] and out.env == {"LOOP": "123"}
    with pytest.raises(RenderError, match=r"command\[1\]: .*over the limit of 1000 "):
        render_task(dag(task), task, run(), try_number=1, limits=RenderLimits(max_field_bytes=1000))
    with pytest.raises(RenderError, match=r"env.LOOP: template does too much work: over 2 operations"):
        render_task(dag(Task("t", command=("true",), env=task.env)), Task("t", command=("true",), env=task.env),
                    run(), try_number=1, limits=RenderLimits(max_operations=2))
