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
    token = body["continuation_token"]  # still running: the log may grow; the token is opaque
    assert isinstance(token, str) and token
    api.ctx.logs.append(key, _lines(2, start=3))
    more = get_ok(client, LOG.format(task="a", n=1) + f"?token={token}")
    assert [line["event"] for line in more["content"]] == ["line 3", "line 4"]
    after = more["continuation_token"]
    assert after not in (None, token)
    assert get_ok(client, LOG.format(task="a", n=1) + f"?token={after}") == {"content": [],
                                                                             "continuation_token": after}
    full = get_ok(client, LOG.format(task="a", n=1) + f"?token={token}&full_content=true")
    assert len(full["content"]) == 5

    stream = client.simulate_get(LOG.format(task="a", n=1), headers=NDJSON)
    assert stream.status_code == 200 and stream.headers["content-type"] == "application/x-ndjson"
    assert stream.headers["airflow-continuation-token"] == after
    parsed = [json.loads(x) for x in stream.text.splitlines()]
    assert [p["event"] for p in parsed] == [f"line {i}" for i in range(5)]
    resumed = client.simulate_get(LOG.format(task="a", n=1) + f"?token={token}", headers=NDJSON)
    assert [json.loads(x)["event"] for x in resumed.text.splitlines()] == ["line 3", "line 4"]
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
    token = stream.headers["airflow-continuation-token"]
    again = client.simulate_get(LOG.format(task="a", n=1) + f"?token={token}", headers=NDJSON)
    assert again.headers["airflow-continuation-token"] == token  # nothing to move past yet
    # A task that never ran (try 0), as the UI asks for skipped tasks.
    body = get_ok(client, LOG.format(task="b", n=0))
    assert "has not run" in body["content"][0]["event"]
    problem_of(client.simulate_get(LOG.format(task="a", n=7)), 404, "GET", LOG.format(task="a", n=7))
    problem_of(client.simulate_get(LOG.format(task="zz", n=1)), 404, "GET", LOG.format(task="zz", n=1))
    problem_of(client.simulate_get("/api/v2/dags/etl/dagRuns/r/taskInstances/a/externalLogUrl/1"), 400, "GET",
               "/api/v2/dags/etl/dagRuns/r/taskInstances/a/externalLogUrl/1")


def test_an_unparsable_line_is_shown_as_text_not_a_500(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="running", ti_states={"a": "running"})
    key = TryKey("etl", "r", "a", -1, 1)
    api.ctx.logs.append(key, _lines(1))
    with api.ctx.logs.path(key).open("ab") as fh:
        fh.write(b'{"event": "torn\n')  # e.g. a full disk mid-write
    api.ctx.logs.append(key, _lines(1, start=1))
    body = get_ok(client, LOG.format(task="a", n=1))
    assert [line["event"] for line in body["content"]] == ["line 0", '{"event": "torn', "line 1"]
    assert body["content"][1] == {"event": '{"event": "torn', "level": "info"}
    stream = client.simulate_get(LOG.format(task="a", n=1), headers=NDJSON)
    assert stream.status_code == 200
    assert [json.loads(x)["event"] for x in stream.text.splitlines()] == ["line 0", '{"event": "torn', "line 1"]


def test_token_continues_by_bytes_and_an_unfinished_line_waits(api, client):
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="running", ti_states={"a": "running"})
    key = TryKey("etl", "r", "a", -1, 1)
    api.ctx.logs.append(key, _lines(2))
    path = api.ctx.logs.path(key)
    with path.open("ab") as fh:
        fh.write(b'{"event": "half')  # a writer mid-append: not a line yet
    body = get_ok(client, LOG.format(task="a", n=1))
    assert [line["event"] for line in body["content"]] == ["line 0", "line 1"]
    stream = client.simulate_get(LOG.format(task="a", n=1), headers=NDJSON)
    assert stream.headers["airflow-continuation-token"] == body["continuation_token"]
    with path.open("ab") as fh:
        fh.write(b' done"}\n')
    more = get_ok(client, LOG.format(task="a", n=1) + f"?token={body['continuation_token']}")
    assert [line["event"] for line in more["content"]] == ["half done"]
    # A token the API did not hand out (mid-line, past the end, not ours) is refused, not misread.
    from leoflow.api.logs import make_token

    for bad in (make_token(3), make_token(10**9), "MTIz"):
        problem_of(client.simulate_get(LOG.format(task="a", n=1) + f"?token={bad}"), 422, "GET",
                   LOG.format(task="a", n=1))


def test_json_answers_are_bounded_and_the_token_continues(api, client, monkeypatch):
    import leoflow.api.logs as logs_api

    monkeypatch.setattr(logs_api, "MAX_JSON_LINES", 3)
    api.seed_dag("etl", tasks=("a",))
    api.seed_run("etl", "r", state="success", ti_states={"a": "success"})
    api.ctx.logs.append(TryKey("etl", "r", "a", -1, 1), _lines(5))
    first = get_ok(client, LOG.format(task="a", n=1))
    assert [line["event"] for line in first["content"]] == ["line 0", "line 1", "line 2"]
    assert first["continuation_token"] is not None  # over, but more lines are left
    rest = get_ok(client, LOG.format(task="a", n=1) + f"?token={first['continuation_token']}")
    assert [line["event"] for line in rest["content"]] == ["line 3", "line 4"]
    assert rest["continuation_token"] is None


def test_dot_ids_cannot_name_a_log_outside_the_directory(api, client):
    api.seed_dag("etl", tasks=("a",))
    for run_id in (".", "..", "..."):
        bad = client.simulate_post("/api/v2/dags/etl/dagRuns", json={"logical_date": None, "dag_run_id": run_id})
        body = problem_of(bad, 400, "POST", "/api/v2/dags/etl/dagRuns")
        assert body["field"] == "body.dag_run_id" and "only dots" in body["detail"]
    assert api.repos.runs.for_dag("etl") == []
    ok = client.simulate_post("/api/v2/dags/etl/dagRuns", json={"logical_date": None, "dag_run_id": "a..b"})
    assert ok.status_code == 200
    # Even a stored id made of dots (from before this rule) maps to one directory under the root.
    root = api.ctx.logs.root.resolve()
    for key in (TryKey("..", "..", "..", -1, 1), TryKey("etl", "..", "a", -1, 1), TryKey("a/b", "../..", ".", -1, 1)):
        path = api.ctx.logs.path(key)
        assert path.resolve().is_relative_to(root) and len(path.relative_to(api.ctx.logs.root).parts) == 5
        api.ctx.logs.append(key, _lines(1))
        assert [line.record["event"] for line in api.ctx.logs.iter_lines(key)] == ["line 0"]
    assert sorted(p.name for p in api.ctx.logs.root.iterdir()) == sorted(["etl", ".2E.2E", "a.2Fb"])
