"""Python DAG files: the SDK, the sandboxed subprocess, and errors with the user's traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from leoflow.dags.loader import ParsedFile, PythonLimits, load_file, parse_yaml_text
from leoflow.domain.serialize import dag_to_dict

LIMITS = PythonLimits(timeout=10, memory_mb=512)


def load_py(tmp_path: Path, source: str, name: str = "dag.py", limits: PythonLimits = LIMITS) -> ParsedFile:
    (tmp_path / name).write_text(textwrap.dedent(source))
    return load_file(tmp_path, name, limits)


YAML_TWIN = """\
dag_id: twin
description: same DAG, two formats
schedule: 1h30m
start_date: 2024-01-01
catchup: false
tags: [py]
params:
  n: {default: 2, type: integer, minimum: 1}
default_args:
  image: busybox
  retries: 1
  retry_delay: 10s
tasks:
  - task_id: a
    command: [echo, a]
  - task_id: b
    command: [echo, b]
    upstream: [a]
  - task_id: c
    command: [echo, c]
    upstream: [a]
  - task_id: d
    command: [echo, d]
    upstream: [b, c]
    trigger_rule: none_failed
    execution_timeout: 5m
    resources: {cpu: 200, memory: 128}
"""

PY_TWIN = """\
from datetime import date, timedelta
from leoflow.sdk import DAG, Param, Task

with DAG("twin", description="same DAG, two formats", schedule=timedelta(hours=1, minutes=30),
         start_date=date(2024, 1, 1), catchup=False, tags=["py"], params={"n": Param(2, type="integer", minimum=1)},
         default_args={"image": "busybox", "retries": 1, "retry_delay": timedelta(seconds=10)}):
    a = Task("a", command=["echo", "a"])
    b = Task("b", command=["echo", "b"])
    c = Task("c", command=["echo", "c"])
    d = Task("d", command=["echo", "d"], trigger_rule="none_failed", execution_timeout=timedelta(minutes=5),
             resources={"cpu": 200, "memory": 128})
    a >> [b, c] >> d
"""


def test_python_and_yaml_give_the_same_serialized_dag(tmp_path: Path) -> None:
    from_py = load_py(tmp_path, PY_TWIN, "twin.py")
    from_yaml = parse_yaml_text("twin.py", YAML_TWIN)
    assert from_py.errors == () and from_yaml.errors == ()
    assert dag_to_dict(from_py.dags[0]) == dag_to_dict(from_yaml.dags[0])
    assert from_py.source == textwrap.dedent(PY_TWIN)


def test_dependency_operators_and_chain(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task, chain
        dag = DAG("ops")
        a, b, c, d, e = (Task(x, dag=dag, image="i") for x in "abcde")
        b << a
        [c, d] << b
        chain(d, e)
        a.set_downstream(e)
        """)
    tasks = parsed.dags[0].tasks
    assert {t: sorted(tasks[t].upstream) for t in tasks} == {
        "a": [], "b": ["a"], "c": ["b"], "d": ["b"], "e": ["a", "d"]}


def test_several_dags_per_file_and_sibling_imports(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("IMAGE = 'alpine:3'\n")
    parsed = load_py(tmp_path, """\
        from helpers import IMAGE
        from leoflow.sdk import DAG, Task
        for n in range(3):
            with DAG(f"gen_{n}"):
                Task("t", image=IMAGE)
        """)
    assert [d.dag_id for d in parsed.dags] == ["gen_0", "gen_1", "gen_2"]
    assert parsed.dags[0].tasks["t"].image == "alpine:3"


def test_prints_do_not_corrupt_the_answer(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task
        print('{"error": "fake"}')
        with DAG("p"):
            Task("t", image="i")
        """)
    assert parsed.ok and parsed.dags[0].dag_id == "p"


def test_the_file_sees_no_secrets_of_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "s3cret")
    monkeypatch.setenv("LEOFLOW_AUTH__JWT_SECRET", "s3cret")
    parsed = load_py(tmp_path, """\
        import os
        from leoflow.sdk import DAG, Task
        leaked = sorted(k for k, v in os.environ.items() if v == "s3cret")
        with DAG("env_" + ("_".join(leaked) or "clean")):
            Task("t", image="i")
        """)
    assert parsed.dags[0].dag_id == "env_clean"


def test_field_errors_point_at_the_call(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task
        with DAG("bad", schedule="@sometimes"):
            Task("ok", image="i")
            Task("t", image="i", retries=-1,
                 trigger_rule="all_sucess")
        """)
    messages = [str(e) for e in parsed.errors]
    assert messages[0].startswith("dag.py:2:6: schedule: invalid schedule '@sometimes'")
    # one position per Task(...) call; its problems in the SDK's argument order
    assert messages[1].startswith("dag.py:4:5: task 't': trigger_rule: unknown trigger rule 'all_sucess'")
    assert messages[2] == "dag.py:4:5: task 't': retries: expected an integer >= 0, got -1"


def test_exception_gives_the_users_traceback_only(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task

        def build():
            return {}["missing"]

        with DAG("x"):
            build()
        """)
    (error,) = parsed.errors
    assert str(error) == "dag.py:4:12: KeyError: 'missing'"
    assert error.detail == (
        "Traceback (most recent call last):\n"
        '  File "dag.py", line 7, in <module>\n    build()\n'
        '  File "dag.py", line 4, in build\n    return {}["missing"]\n           ~~^^^^^^^^^^^\n'
        "KeyError: 'missing'\n")


def test_sdk_misuse_is_reported_at_the_users_line(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task
        with DAG("x"):
            Task("t", image="i")
            Task("t", image="i")
        """)
    (error,) = parsed.errors
    assert str(error) == "dag.py:4:5: ValueError: duplicate task_id 't' in DAG 'x'"
    assert "leoflow" not in (error.detail or "").replace("from leoflow.sdk", "")
    parsed = load_py(tmp_path, "from leoflow.sdk import Task\nTask('orphan', image='i')  # DAG\n")
    assert str(parsed.errors[0]) == (
        "dag.py:2:1: ValueError: task 'orphan' has no DAG: create it inside 'with DAG(...)' or pass dag=")


def test_syntax_error(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, "from leoflow.sdk import DAG\nwith DAG('x'):\n    t = (\n")
    (error,) = parsed.errors
    assert str(error) == "dag.py:3:9: SyntaxError: '(' was never closed"
    assert error.detail == '  File "dag.py", line 3\n    t = (\n        ^\nSyntaxError: \'(\' was never closed\n'


def test_timeout(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        import time
        from leoflow.sdk import DAG
        while True:
            time.sleep(0.01)
        """, limits=PythonLimits(timeout=0.5, memory_mb=512))
    (error,) = parsed.errors
    assert str(error) == "dag.py:4:5: timed out: evaluating the file took longer than 0.5s"
    assert 'File "dag.py", line 4, in <module>' in (error.detail or "")


def test_timeout_that_ignores_the_alarm_is_killed(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        import signal
        from leoflow.sdk import DAG
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass
        """, limits=PythonLimits(timeout=0.5, memory_mb=512))
    (error,) = parsed.errors
    assert error.message.startswith("timed out: evaluating the file")


def test_memory_limit(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG
        hog = bytearray(1024 * 1024 * 1024)
        """, limits=PythonLimits(timeout=10, memory_mb=256))
    (error,) = parsed.errors
    assert str(error) == "dag.py:2:7: out of memory: evaluating the file needed more than its limit of 256 MB"
    assert "MemoryError" in (error.detail or "")


def test_process_exit_and_no_dag(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, "import os\nfrom leoflow.sdk import DAG\nos._exit(3)\n")
    assert [str(e) for e in parsed.errors] == ["dag.py:1:1: the DAG file's process exited with status 3"]
    parsed = load_py(tmp_path, "from leoflow.sdk import DAG\n")
    assert [str(e) for e in parsed.errors] == ["dag.py:1:1: no DAG defined: create one with leoflow.sdk.DAG"]


def test_same_dag_id_twice_in_one_file(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Task
        for _ in range(2):
            with DAG("same"):
                Task("t", image="i")
        """)
    assert [str(e) for e in parsed.errors] == ["dag.py:1:1: dag_id 'same' is defined twice in this file"]


def test_values_that_are_not_json_are_named(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        from leoflow.sdk import DAG, Param, Task
        with DAG("x", params={"p": Param(object())}):
            Task("t", image="i")
        """)
    (error,) = parsed.errors
    assert str(error).startswith("dag.py:2:6: DAG 'x': cannot use a value of type object in a DAG: <object object at ")


def test_a_bundle_cannot_shadow_the_sdk(tmp_path: Path) -> None:
    (tmp_path / "leoflow").mkdir()
    (tmp_path / "leoflow" / "__init__.py").write_text("raise RuntimeError('shadowed')\n")
    parsed = load_py(tmp_path, "from leoflow.sdk import DAG, Task\nwith DAG('ok'):\n    Task('t', image='i')\n")
    assert parsed.ok and parsed.dags[0].dag_id == "ok"


def test_chatty_files_are_bounded_and_their_output_tail_is_kept(tmp_path: Path) -> None:
    parsed = load_py(tmp_path, """\
        import os, sys
        from leoflow.sdk import DAG
        for i in range(20000):
            print("noise line", i)
        sys.stderr.flush()
        os._exit(2)
        """)
    (error,) = parsed.errors
    assert error.message == "the DAG file's process exited with status 2"
    assert error.detail is not None and len(error.detail) <= 4000 and error.detail.endswith("noise line 19999\n")
