"""Retention: `leoflow db clean` expires finished runs, compacts the rest, never touches active runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leoflow.cli.main import main
from leoflow.domain.records import AuditEvent
from leoflow.domain.states import DagRunState
from leoflow.store.repos import Repositories, TIKey
from leoflow.store.repos.retention import clean
from leoflow.store.sqlite import SqliteStore
from tests.store.repos.conftest import make_run, make_tis

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _seed(repos: Repositories, now: datetime) -> None:
    old = replace(make_run("etl", 0, state=DagRunState.SUCCESS), end_date=now - timedelta(days=40))
    recent = replace(make_run("etl", 1, state=DagRunState.FAILED), end_date=now - timedelta(days=2))
    stuck = replace(make_run("etl", 2, state=DagRunState.RUNNING), run_after=now - timedelta(days=90))
    for run in (old, recent, stuck):
        repos.runs.create(run, make_tis(run, 3))
    repos.xcom.set(TIKey("etl", old.run_id, "task_000"), "return_value", 1, try_number=1, timestamp=now)
    repos.audit.append(AuditEvent(0, now - timedelta(days=45), "old"))
    repos.audit.append(AuditEvent(0, now - timedelta(days=1), "new"))


def test_clean_expires_compacts_and_keeps_active_runs(repos: Repositories) -> None:
    _seed(repos, NOW)
    dry = clean(repos, now=NOW, retention_days=30, dry_run=True)
    assert (dry.runs, dry.audit_events, dry.dry_run) == (1, 1, True) and dry.keys == 1 + 3 + 1 + 1
    assert len(repos.runs.list().items) == 3
    report = clean(repos, now=NOW, retention_days=30)
    assert (report.runs, report.audit_events, report.keys, report.bytes) == (1, 1, dry.keys, dry.bytes)
    remaining = {r.record.state for r in repos.runs.list().items}
    assert remaining == {DagRunState.FAILED, DagRunState.RUNNING}
    recent = make_run("etl", 1)
    assert repos.task_instances.snapshot("etl", recent.run_id).packed_index > 0  # compacted
    assert repos.task_instances.snapshot("etl", make_run("etl", 2).run_id).packed_index == 0  # active: live
    assert [e.event for e in repos.audit.list().items] == ["new"]
    with pytest.raises(ValueError, match="retention_days"):
        clean(repos, now=NOW, retention_days=-1)


def test_clean_removes_orphans_only_if_still_orphaned(srepos: Repositories) -> None:
    run = make_run("etl", 5, state=DagRunState.SUCCESS)
    srepos.runs.create(run, make_tis(run, 2))
    srepos.store.delete(srepos.keyspace.run("etl", run.run_id))  # a crashed delete left TIs behind
    ghost = make_run("etl", 6)
    srepos.store.put(srepos.keyspace.ti(TIKey("etl", ghost.run_id, "t")), b"{}")

    def revive(_: float) -> None:  # during the grace period the ghost run appears (a create in flight)
        srepos.store.put(srepos.keyspace.run("etl", ghost.run_id), srepos.store.get(
            srepos.keyspace.ti(TIKey("etl", ghost.run_id, "t"))).value)  # type: ignore[union-attr]

    report = clean(srepos, now=NOW, retention_days=30, sleep=revive)
    assert report.orphans == 2
    assert srepos.task_instances.list_for_run("etl", run.run_id) == []
    assert srepos.store.get(srepos.keyspace.ti(TIKey("etl", ghost.run_id, "t"))) is not None


def test_db_clean_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = Path(os.environ["LEOFLOW_HOME"])
    store = SqliteStore(home / "leoflow.db")
    now = datetime.now(UTC)
    _seed(Repositories.open(store, root="leoflow"), now)
    store.close()
    assert main(["db", "clean", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["runs"] == 1 and out["retention_days"] == 30
    assert main(["db", "clean", "--retention-days", "0", "-v"]) == 0
    text = capsys.readouterr().out
    assert "removed 2 finished runs" in text and "run etl/" in text
    assert main(["db", "clean", "--retention-days", "-3"]) == 2
    assert "--retention-days must be >= 0" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nretention_dayz = 3\n")
    assert main(["db", "clean", "--config", str(bad)]) == 1
    assert "retention_dayz" in capsys.readouterr().err


def test_db_clean_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "LEOFLOW_STORE__RETENTION_DAYS": "7"}
    proc = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "db", "clean", "--json"],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["retention_days"] == 7
