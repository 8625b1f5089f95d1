"""Task logs: NDJSON and JSON shapes, following a running try, and "no logs yet" instead of errors."""

from __future__ import annotations

import json

from leoflow.executors.port import TryKey
from tests.api.runs_helpers import get_ok, problem_of

LOG = "/api/v2/dags/etl/dagRuns/r/taskInstances/{task}/logs/{n}"
NDJSON = {"Accept": "application/x-ndjson"}


def _lines(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"timestamp": f"2026-03-01T12:00:{i:02d}.000000Z", "level": "info", "event": f"line {i}",
             "logger": "task"} for i in range(start, start + n)]


def test_running_try_is_followed_with_the_continuation_token(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="running", ti_states={"a": "running"})
    key = TryKey("etl", "r", "a", -1, 1)
    api.ctx.logs.append(key, _lines(3))
    body = get_ok(client, LOG.format(task="a", n=1) + "?map_index=-1")
    assert [line["event"] for line in body["content"]] == ["line 0", "line 1", "line 2"]
    assert body["continuation_token"] == "3"  # still running: the log may grow
    api.ctx.logs.append(key, _lines(2, start=3))
    more = get_ok(client, LOG.format(task="a", n=1) + "?token=3")
    assert [line["event"] for line in more["content"]] == ["line 3", "line 4"]
    assert more["continuation_token"] == "5"
    full = get_ok(client, LOG.format(task="a", n=1) + "?token=3&full_content=true")
    assert len(full["content"]) == 5

    stream = client.simulate_get(LOG.format(task="a", n=1), headers=NDJSON)
    assert stream.status_code == 200 and stream.headers["content-type"] == "application/x-ndjson"
    assert stream.headers["airflow-continuation-token"] == "5"
    parsed = [json.loads(x) for x in stream.text.splitlines()]
    assert [p["event"] for p in parsed] == [f"line {i}" for i in range(5)]
    problem_of(client.simulate_get(LOG.format(task="a", n=1) + "?token=abc"), 422, "GET", LOG.format(task="a", n=1))


def test_finished_try_has_no_token_and_odd_lines_are_made_valid(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    api.ctx.logs.append(TryKey("etl", "r", "a", -1, 1), [{"event": {"nested": 1}, "timestamp": None}, {"msg": "x"}])
    body = get_ok(client, LOG.format(task="a", n=1))
    assert body["continuation_token"] is None
    assert body["content"] == [{"event": '{"nested": 1}'}, {"msg": "x", "event": ""}]


def test_no_log_yet_answers_a_line_not_an_error(api, client):
    api.seed_dag("etl", tasks=("a", "b"))
    api.seed_run("etl", "r", state="running", ti_states={"a": "queued", "b": None})
    stream = client.simulate_get(LOG.format(task="a", n=1), headers=NDJSON)
    assert stream.status_code == 200
    (line,) = [json.loads(x) for x in stream.text.splitlines()]
    assert "No logs available yet" in line["event"] and "queued" in line["event"]
    assert stream.headers["airflow-continuation-token"] == "0"
    # A task that never ran (try 0), as the UI asks for skipped tasks.
    body = get_ok(client, LOG.format(task="b", n=0))
    assert "has not run" in body["content"][0]["event"]
    problem_of(client.simulate_get(LOG.format(task="a", n=7)), 404, "GET", LOG.format(task="a", n=7))
    problem_of(client.simulate_get(LOG.format(task="zz", n=1)), 404, "GET", LOG.format(task="zz", n=1))
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r/taskInstances/a/externalLogUrl/1"), 400, "GET",
               "/api/v2/dags/etl/dagRuns/r/taskInstances/a/externalLogUrl/1")
