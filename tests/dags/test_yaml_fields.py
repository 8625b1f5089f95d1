"""Every field of the YAML format, good and bad, with the exact messages and positions."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from leoflow.dags.loader import parse_yaml_text
from leoflow.domain.dag import DAG, Param, Resources
from leoflow.domain.states import TriggerRule


def load(text: str) -> DAG:
    parsed = parse_yaml_text("f.yaml", textwrap.dedent(text))
    assert parsed.errors == (), [str(e) for e in parsed.errors]
    assert len(parsed.dags) == 1
    return parsed.dags[0]


def errors(text: str) -> list[str]:
    parsed = parse_yaml_text("f.yaml", textwrap.dedent(text))
    assert parsed.dags == ()
    return [str(e) for e in parsed.errors]


MINIMAL = """\
dag_id: d
tasks:
  - task_id: t
    command: [echo]
"""


def with_dag(extra: str) -> str:
    return f"dag_id: d\n{extra}\ntasks:\n  - task_id: t\n    command: [echo]\n"


def with_task(extra: str) -> str:
    lines = "\n".join("    " + line for line in textwrap.dedent(extra).strip().splitlines())
    return f"dag_id: d\ntasks:\n  - task_id: t\n    command: [echo]\n{lines}\n"


def test_minimal_defaults() -> None:
    dag = load(MINIMAL)
    assert dag == DAG(dag_id="d", tasks=dag.tasks, fileloc="f.yaml")
    task = dag.tasks["t"]
    assert task.command == ("echo",)
    assert (task.retries, task.retry_delay, task.pool, task.queue, task.owner) == (
        0, timedelta(minutes=5), "default_pool", "default", "airflow")
    assert dag.is_paused_upon_creation is True


def test_every_dag_field() -> None:
    dag = load("""\
        dag_id: full.dag-1
        description: A DAG
        schedule: "0 6 * * *"
        start_date: 2024-01-01
        end_date: 2024-03-01T12:30:00
        timezone: Europe/Berlin
        catchup: true
        max_active_runs: 3
        max_active_tasks: 4
        dagrun_timeout: 1h30m
        tags: [b, a]
        owner: team
        params:
          n: {default: 2, type: integer, minimum: 1, description: how many}
          plain: 5
          obj: {default: {k: v}, type: object}
        default_args: {retries: 3}
        doc_md: "# Hello"
        is_paused_upon_creation: false
        tasks:
          - task_id: t
            command: [echo]
        """)
    assert dag.dag_id == "full.dag-1"
    assert dag.description == "A DAG"
    assert dag.schedule == "0 6 * * *"
    # naive dates are in the DAG's timezone; the model keeps UTC
    assert dag.start_date == datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
    assert dag.end_date == datetime(2024, 3, 1, 11, 30, tzinfo=UTC)
    assert dag.timezone == "Europe/Berlin"
    assert (dag.catchup, dag.max_active_runs, dag.max_active_tasks) == (True, 3, 4)
    assert dag.dagrun_timeout == timedelta(minutes=90)
    assert dag.tags == ("b", "a")
    assert dag.owner == "team"
    assert dag.params == {
        "n": Param("n", 2, {"type": "integer", "minimum": 1, "description": "how many"}, "how many"),
        "plain": Param("plain", 5),
        "obj": Param("obj", {"k": "v"}, {"type": "object"}),
    }
    assert dag.default_args == {"retries": 3}
    assert dag.doc_md == "# Hello"
    assert dag.is_paused_upon_creation is False
    assert dag.tasks["t"].retries == 3
    assert dag.tasks["t"].owner == "team"


def test_every_task_field() -> None:
    dag = load("""\
        dag_id: d
        tasks:
          - task_id: up
            command: [echo]
          - task_id: t
            image: busybox:1.36
            command: ["sh", "-c", "echo {{ ds }}"]
            args: ["--n", 3]
            env: {A: "x", B: 2, C: "{{ params.x }}"}
            upstream: [up]
            trigger_rule: one_failed
            retries: 2
            retry_delay: 30s
            retry_exponential_backoff: true
            max_retry_delay: 10m
            execution_timeout: 60
            pool: small
            pool_slots: 2
            priority_weight: -3
            queue: gpu
            resources: {cpu: 500, memory: 1024, memory_max: 2048}
            connections: [db1]
            variables: [v1, v2]
            owner: me
            doc_md: task docs
            is_teardown: true
            driver: raw_exec
        """)
    t = dag.tasks["t"]
    assert t.image == "busybox:1.36"
    assert t.command == ("sh", "-c", "echo {{ ds }}")
    assert t.args == ("--n", "3")
    assert t.env == {"A": "x", "B": "2", "C": "{{ params.x }}"}
    assert t.upstream == frozenset({"up"})
    assert t.trigger_rule is TriggerRule.ONE_FAILED
    assert t.retries == 2
    assert t.retry_delay == timedelta(seconds=30)
    assert t.retry_exponential_backoff is True
    assert t.max_retry_delay == timedelta(minutes=10)
    assert t.execution_timeout == timedelta(seconds=60)
    assert (t.pool, t.pool_slots, t.priority_weight, t.queue) == ("small", 2, -3, "gpu")
    assert t.resources == Resources(500, 1024, 2048)
    assert (t.connections, t.variables) == (("db1",), ("v1", "v2"))
    assert (t.owner, t.doc_md, t.is_teardown, t.is_setup, t.driver) == ("me", "task docs", True, False, "raw_exec")


@pytest.mark.parametrize("rule", [r.value for r in TriggerRule])
def test_every_trigger_rule(rule: str) -> None:
    assert load(with_task(f"trigger_rule: {rule}")).tasks["t"].trigger_rule.value == rule


def test_default_args_apply_unless_the_task_sets_the_field() -> None:
    dag = load("""\
        dag_id: d
        owner: dag-owner
        default_args:
          image: alpine
          command: [echo, default]
          retries: 4
          retry_delay: 1m
          env: {A: "1"}
          resources: {cpu: 200, memory: 64}
          trigger_rule: all_done
          owner: args-owner
        tasks:
          - task_id: a
          - task_id: b
            retries: 0
            env: {B: "2"}
            command: [echo, own]
        """)
    a, b = dag.tasks["a"], dag.tasks["b"]
    assert (a.image, a.command, a.retries, a.retry_delay, a.env) == (
        "alpine", ("echo", "default"), 4, timedelta(minutes=1), {"A": "1"})
    assert a.resources == Resources(200, 64) and a.trigger_rule is TriggerRule.ALL_DONE
    # Airflow semantics: a task's own value replaces the default entirely (no merging)
    assert (b.retries, b.env, b.command) == (0, {"B": "2"}, ("echo", "own"))
    assert a.owner == b.owner == "args-owner"
    assert dag.owner == "dag-owner"
    assert dag.default_args["retry_delay"] == 60 and dag.default_args["resources"] == {
        "cpu": 200, "memory": 64, "memory_max": None}


def test_owner_falls_back_to_default_args_then_airflow() -> None:
    assert load("dag_id: d\ndefault_args: {owner: x}\ntasks: [{task_id: t, command: [a]}]\n").owner == "x"
    assert load(MINIMAL).owner == "airflow"


def test_image_alone_is_a_runnable_task_and_upstream_may_be_a_string() -> None:
    dag = load("dag_id: d\ntasks:\n  - {task_id: a, image: alpine}\n  - {task_id: b, image: alpine, upstream: a}\n")
    assert dag.tasks["b"].upstream == frozenset({"a"})


def test_aware_start_date_and_quoted_dates() -> None:
    dag = load(with_dag('start_date: "2024-01-01T06:00:00+02:00"\ntimezone: America/New_York'))
    assert dag.start_date == datetime(2024, 1, 1, 4, tzinfo=UTC)
    assert load(with_dag('start_date: "2024-01-01"')).start_date == datetime(2024, 1, 1, tzinfo=UTC)


def test_yaml_anchors_and_merge_keys() -> None:
    dag = load("""\
        dag_id: d
        tasks:
          - &base {task_id: a, image: alpine, retries: 2}
          - <<: *base
            task_id: b
        """)
    assert dag.tasks["b"].retries == 2 and dag.tasks["b"].image == "alpine"


# ---- errors: (document, exact messages) -----------------------------------------------------

BAD_DAG_FIELDS = [
    ("dag_id: 'bad id'", "1:9: dag_id: expected 1-250 letters, digits, '_', '.' or '-', got 'bad id'"),
    ("description: [x]", "2:14: description: expected a string, got a list"),
    ("schedule: '@sometimes'", "2:11: schedule: invalid schedule '@sometimes': expected a cron expression with 5 "
     "fields, one of @once, @hourly, @daily, @weekly, @monthly, @yearly, a duration like \"30m\" or \"1h30m\", "
     "or null"),
    ("schedule: 5", "2:11: schedule: expected a cron expression, preset, duration or null, got 5"),
    ("start_date: tomorrow", "2:13: start_date: expected a date or datetime like 2024-01-01 or "
     "2024-01-01T06:00:00Z, got 'tomorrow'"),
    ("end_date: 12", "2:11: end_date: expected a date or datetime like 2024-01-01 or 2024-01-01T06:00:00Z, got 12"),
    ("timezone: Mars/Olympus", "2:11: timezone: unknown timezone 'Mars/Olympus' (expected an IANA name like 'UTC' "
     "or 'Europe/Berlin')"),
    ("catchup: 'yes'", "2:10: catchup: expected true or false, got 'yes'"),
    ("max_active_runs: 0", "2:18: max_active_runs: expected an integer >= 1, got 0"),
    ("max_active_tasks: 1.5", "2:19: max_active_tasks: expected an integer >= 1, got 1.5"),
    ("dagrun_timeout: soon", '2:17: dagrun_timeout: expected a duration like "30s", "5m", "1h30m" or a number of '
     "seconds, got 'soon'"),
    ("tags: x", "2:7: tags: expected a list, got 'x'"),
    ("tags: [a, a]", "2:11: tags: item 2: duplicate 'a'"),
    ("tags: ['" + "x" * 101 + "']", "2:8: tags: item 1: a tag is at most 100 characters, got 101"),
    ("owner: ''", "2:8: owner: must not be empty"),
    ("doc_md: 3", "2:9: doc_md: expected a string, got 3"),
    ("is_paused_upon_creation: 1", "2:26: is_paused_upon_creation: expected true or false, got 1"),
    ("shedule: '@daily'", "2:1: unknown key 'shedule' (did you mean 'schedule'?)"),
    ("frobnicate: 1", "2:1: unknown key 'frobnicate'"),
    ("params: [1]", "2:9: params: expected a mapping of param names, got a list"),
    ("params: {n: {default: 1, typo: x}}", "2:26: params.n: unknown key 'typo' (did you mean 'type'?) (write a mapping "
     "default as 'default: {...}')"),
    ("params: {n: {default: a, type: integer}}", "2:13: params.n: default 'a' is invalid: 'a' is not of type "
     "'integer'"),
    ("params: {n: {type: intgr}}", "2:13: params.n: invalid JSON schema at type: 'intgr' is not valid under any of "
     "the given schemas"),
    ("params: {n: {description: 5}}", "2:27: params.n.description: expected a string, got 5"),
    ("default_args: [1]", "2:15: default_args: expected a mapping, got a list"),
    ("default_args: {task_id: x}", "2:16: default_args: unknown key 'task_id' in default_args"),
    ("default_args: {retries: x}", "2:25: default_args: retries: expected an integer >= 0, got 'x'"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_DAG_FIELDS, ids=[m[0] for m in BAD_DAG_FIELDS])
def test_bad_dag_field(extra: str, message: str) -> None:
    text = with_dag(extra) if not extra.startswith("dag_id") else f"{extra}\ntasks:\n  - task_id: t\n    command: [e]\n"
    assert errors(text) == [f"f.yaml:{message}"]


BAD_TASK_FIELDS = [
    ("image: ''", "5:12: task 't': image: must not be empty"),
    ("args: 'x'", "5:11: task 't': args: expected a list, got 'x'"),
    ("args: [true]", "5:12: task 't': args: item 1: expected a string, got true (quote it)"),
    ("args: ['{{ ds }']", "5:12: task 't': args: item 1: template syntax error: unexpected '}'"),
    ("env: [A]", "5:10: task 't': env: expected a mapping of variable names to strings, got a list"),
    ("env: {1A: x}", "5:11: task 't': env: invalid variable name '1A' (letters, digits and '_', not starting "
     "with a digit)"),
    ("env: {A: null}", "5:14: task 't': env: A: expected a string, got null (quote it)"),
    ("env: {A: '{% if %}'}", "5:14: task 't': env: A: template syntax error: Expected an expression, got 'end of "
     "statement block'"),
    ("upstream: [t2, t2]", "5:20: task 't': upstream: item 2: duplicate 't2'"),
    ("upstream: [x]", "5:16: task 't': upstream 'x' is not a task of this DAG"),
    ("trigger_rule: all_sucess", "5:19: task 't': trigger_rule: unknown trigger rule 'all_sucess' (did you mean "
     "'all_success'? expected one of: all_success, all_failed, all_done, all_done_setup_success, one_success, "
     "one_failed, one_done, none_failed, none_failed_min_one_success, none_skipped, all_skipped, always)"),
    ("retries: -1", "5:14: task 't': retries: expected an integer >= 0, got -1"),
    ("retry_delay: 5x", '5:18: task \'t\': retry_delay: expected a duration like "30s", "5m", "1h30m" or a number '
     "of seconds, got '5x'"),
    ("retry_delay: -5", '5:18: task \'t\': retry_delay: expected a duration like "30s", "5m", "1h30m" or a number '
     "of seconds, got a negative number -5"),
    ("retry_exponential_backoff: 1", "5:32: task 't': retry_exponential_backoff: expected true or false, got 1"),
    ("max_retry_delay: [1]", '5:22: task \'t\': max_retry_delay: expected a duration like "30s", "5m", "1h30m" or '
     "a number of seconds, got a list"),
    ("execution_timeout: true", '5:24: task \'t\': execution_timeout: expected a duration like "30s", "5m", '
     '"1h30m" or a number of seconds, got true'),
    ("pool: 'a b'", "5:11: task 't': pool: expected 1-250 letters, digits, '_', '.' or '-', got 'a b'"),
    ("pool_slots: 0", "5:17: task 't': pool_slots: expected an integer >= 1, got 0"),
    ("priority_weight: high", "5:22: task 't': priority_weight: expected an integer, got 'high'"),
    ("queue: ''", "5:12: task 't': queue: expected 1-250 letters, digits, '_', '.' or '-', got ''"),
    ("resources: 2", "5:16: task 't': resources: expected a mapping with cpu (MHz) and memory (MiB), got 2"),
    ("resources: {gpu: 1}", "5:17: task 't': resources: unknown key 'gpu' in resources (did you mean 'cpu'?)"),
    ("resources: {cpu: 0}", "5:22: task 't': resources: resources.cpu: expected an integer >= 1, got 0"),
    ("resources: {memory: 512, memory_max: 256}", "5:16: task 't': resources: resources.memory_max (256) must be "
     ">= memory (512)"),
    ("connections: [db, db]", "5:23: task 't': connections: item 2: duplicate 'db'"),
    ("variables: ['']", "5:17: task 't': variables: item 1: must not be empty"),
    ("owner: 3", "5:12: task 't': owner: expected a string, got 3"),
    ("doc_md: [x]", "5:13: task 't': doc_md: expected a string, got a list"),
    ("is_setup: maybe", "5:15: task 't': is_setup: expected true or false, got 'maybe'"),
    ("driver: podman", "5:13: task 't': driver: unknown driver 'podman' (expected one of: docker, exec, raw_exec)"),
    ("retires: 3", "5:5: task 't': unknown key 'retires' (did you mean 'retries'?)"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_TASK_FIELDS, ids=[m[0] for m in BAD_TASK_FIELDS])
def test_bad_task_field(extra: str, message: str) -> None:
    text = with_task(extra)
    if "t2" in extra:
        text += "  - task_id: t2\n    command: [echo]\n"
    assert errors(text) == [f"f.yaml:{message}"]


def test_structural_errors() -> None:
    assert errors("tasks: []\n") == ["f.yaml:1:1: missing required key 'dag_id'",
                                     "f.yaml:1:8: tasks: a DAG needs at least one task"]
    assert errors("dag_id: d\n") == ["f.yaml:1:1: missing required key 'tasks'"]
    assert errors("dag_id: d\ntasks: {a: 1}\n") == ["f.yaml:2:8: tasks: expected a list of tasks, got a mapping"]
    assert errors("dag_id: d\ntasks: [x]\n") == ["f.yaml:2:9: tasks: item 1: expected a task mapping, got 'x'"]
    assert errors("- a\n- b\n") == ["f.yaml:1:1: a DAG file must be a mapping with dag_id and tasks, got a list"]
    assert errors("dag_id: d\ntasks:\n  - command: [echo]\n") == [
        "f.yaml:3:5: task 1: missing required key 'task_id'"]


def test_task_level_errors() -> None:
    assert errors("dag_id: d\ntasks:\n  - task_id: a\n") == [
        "f.yaml:3:5: task 'a': needs a command (or an image to run with its default entrypoint)"]
    assert errors("dag_id: d\ntasks:\n  - {task_id: a, command: [x], is_setup: true, is_teardown: true}\n") == [
        "f.yaml:3:5: task 'a': cannot be both is_setup and is_teardown"]
    assert errors("dag_id: d\ntasks:\n  - {task_id: a, command: [x]}\n  - {task_id: a, command: [y]}\n") == [
        "f.yaml:4:15: duplicate task_id 'a' (first at line 3)"]


def test_cycle_is_reported_with_its_path() -> None:
    text = """\
        dag_id: d
        tasks:
          - {task_id: a, command: [x], upstream: [c]}
          - {task_id: b, command: [x], upstream: [a]}
          - {task_id: c, command: [x], upstream: [b]}
        """
    assert errors(text) == ["f.yaml:3:5: cycle in task dependencies: a -> b -> c -> a"]


def test_date_rules() -> None:
    assert errors(with_dag("start_date: 2024-02-01\nend_date: 2024-01-01")) == [
        "f.yaml:3:1: end_date: must not be before start_date"]
    assert errors(with_dag("schedule: '@daily'\ncatchup: true")) == [
        "f.yaml:3:1: catchup: true needs a start_date to catch up from"]


def test_all_errors_of_a_file_are_reported_in_order() -> None:
    text = "dag_id: d\nshedule: x\ntasks:\n  - {task_id: a, retries: -1}\n"
    assert errors(text) == [
        "f.yaml:2:1: unknown key 'shedule' (did you mean 'schedule'?)",
        "f.yaml:4:5: task 'a': needs a command (or an image to run with its default entrypoint)",
        "f.yaml:4:27: task 'a': retries: expected an integer >= 0, got -1",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("", "1:1: file is empty: expected a mapping with dag_id and tasks"),
    ("dag_id: [\n", "2:1: YAML syntax error: did not find expected node content"),
    ("dag_id: a\ndag_id: b\n", "2:1: duplicate key 'dag_id' (first at line 1)"),
    ("dag_id: a\n---\ndag_id: b\n", "2:1: YAML syntax error: one DAG per file: found a second YAML document"),
    ("1: x\n", "1:1: keys must be strings, got '1' (quote it)"),
    ("dag_id: !custom x\n", "1:9: cannot read value 'x': could not determine a constructor for the tag '!custom'"),
    ("a: b: c\n", "1:5: YAML syntax error: mapping values are not allowed in this context"),
    ("dag_id: d\ntasks:\n  - task_id: t\n\tcommand: x\n", "4:1: YAML syntax error: found a tab character that "
     "violates indentation"),
])
def test_yaml_syntax_errors(text: str, message: str) -> None:
    assert errors(text) == [f"f.yaml:{message}"]


def test_alias_bombs_and_recursive_aliases_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    assert errors(bomb) == ["f.yaml:5:4: document too large: more than 1000000 values once aliases are expanded"]
    assert errors("a: &a [1, *a]\n") == ["f.yaml:1:4: recursive alias: a value may not contain itself"]


def test_param_values_are_json() -> None:
    dag = load(with_dag("params:\n  day: {default: 2024-01-31, type: string, format: date}\n  plain: 2024-02-01"))
    assert dag.params["day"].default == "2024-01-31" and dag.params["plain"].default == "2024-02-01"
    assert errors(with_dag("params:\n  x: .nan")) == ["f.yaml:3:6: params.x: nan is not a JSON value"]
    assert errors(with_dag("params:\n  x: {default: .inf}")) == ["f.yaml:3:6: params.x: inf is not a JSON value"]


def test_ids_made_only_of_dots_are_refused_with_their_position() -> None:
    """'.' and '..' would name a directory outside the task-log tree."""
    assert errors("dag_id: '..'\ntasks:\n  - task_id: t\n    command: [e]\n") == [
        "f.yaml:1:9: dag_id: must not be '.', '..' or only dots (ids name directories), got '..'"]
    assert errors("dag_id: d\ntasks:\n  - task_id: '.'\n    command: [e]\n") == [
        "f.yaml:3:14: task '.': task_id: must not be '.', '..' or only dots (ids name directories), got '.'"]
    assert errors(with_task("queue: '...'")) == [
        "f.yaml:5:12: task 't': queue: must not be '.', '..' or only dots (ids name directories), got '...'"]
    assert load("dag_id: a..b\ntasks:\n  - task_id: .t.\n    command: [e]\n").dag_id == "a..b"
