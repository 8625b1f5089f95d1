"""``[ui] connection_types_file`` in a real leoflow-server (gunicorn, 2 workers): a bad file fails the
start in one line; on SIGHUP a bad file is logged and the old types stay, a good one is applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from leoflow.api.auth.passwords import hash_password
from leoflow.config import Config
from leoflow.domain.records import User
from leoflow.store.repos import build
from leoflow.store.sqlite import SqliteStore
from tests.api.test_gunicorn import PASSWORD, _free_port, _http, _wait_until, _write_config
from tests.processes import stop

PATH = "/ui/connections/hook_meta"
SNOWFLAKE = "- conn_type: snowflake\n  name: Snowflake\n"
CLICKHOUSE = "- conn_type: clickhouse\n  name: ClickHouse\n"
BROKEN = "- conn_type: snowflake\n  name: Snowflake\n  extra_fields:\n    role: {type: text}\n"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOFLOW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, "LEOFLOW_HOME": str(home)}


def test_a_bad_file_fails_the_start_in_one_line(tmp_path: Path) -> None:
    types = tmp_path / "types.yaml"
    types.write_text(BROKEN)
    cfg = tmp_path / "leoflow.toml"
    _write_config(cfg, tmp_path, _free_port(), extra=f'[ui]\nconnection_types_file = "{types}"\n')
    for extra_args in (["--check"], []):
        run = subprocess.run([sys.executable, "-m", "leoflow.api.main", "--config", str(cfg), *extra_args],
                             capture_output=True, text=True, env=_env(tmp_path), timeout=60, check=False)
        assert run.returncode == 2, run.stderr
        assert run.stderr == (f"leoflow-server: {types}:4:18: snowflake.extra_fields.role.type: 'text' is not "
                              "one of string, password, integer, number, boolean\n")
    # the same key from the environment, like every other key
    env = {**_env(tmp_path), "LEOFLOW_UI__CONNECTION_TYPES_FILE": str(tmp_path / "absent.yaml")}
    run = subprocess.run([sys.executable, "-m", "leoflow.api.main", "--check"], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert run.returncode == 2 and "absent.yaml: connection types file" in run.stderr and "Traceback" not in run.stderr


def test_sighup_keeps_the_old_types_on_a_bad_file_and_applies_a_good_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    store = SqliteStore(home / "leoflow.db")
    build(store, config=Config()).users.create(User("ops", hash_password(PASSWORD, n=2**10), "admin"))
    store.close()
    types = tmp_path / "types.yaml"
    types.write_text(SNOWFLAKE)
    port = _free_port()
    cfg = tmp_path / "leoflow.toml"
    _write_config(cfg, home, port, extra=f'[ui]\nconnection_types_file = "{types}"\n')
    log_path = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "leoflow.api.main", "--config", str(cfg)], env=_env(home),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until(lambda: _http("GET", base + "/health/live")[0] == 200, 30, "server start")
            status, body = _http("POST", base + "/auth/token", {"username": "ops", "password": PASSWORD})
            assert status == 201, body
            token = body["access_token"]

            def offered() -> set[str]:
                status, body = _http("GET", base + PATH, token=token)
                assert status == 200, body
                return {m["connection_type"] for m in body}

            assert "snowflake" in offered()
            types.write_text(BROKEN)
            proc.send_signal(signal.SIGHUP)
            _wait_until(lambda: "config reload failed" in log_path.read_text(errors="replace"), 20, "reload error")
            line = next(x for x in log_path.read_text().splitlines() if "config reload failed" in x)
            assert f"{types}:4:18: snowflake.extra_fields.role.type" in line
            # new workers are forked from the master with the kept config and types (4 boots = 2 + 2)
            _wait_until(lambda: log_path.read_text(errors="replace").count("Booting worker") >= 4, 20,
                        "workers restarted after the failed reload")
            for _ in range(10):
                assert "snowflake" in offered()
            types.write_text(CLICKHOUSE)
            proc.send_signal(signal.SIGHUP)
            _wait_until(lambda: "clickhouse" in offered() and "snowflake" not in offered(), 20, "reloaded types")
            assert proc.poll() is None
        finally:
            stop(proc)
