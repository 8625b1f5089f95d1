"""The executor's contract, against the fake Nomad and (opt-in) a real one: same tests, same asserts."""

from __future__ import annotations

import json
import time

from leoflow.domain.dag import Resources
from leoflow.executors.nomad import job_id_for
from leoflow.executors.port import TryOutcome

from .conftest import NomadRig, new_key, request, sh


def _job_exists(rig: NomadRig, job_id: str) -> bool:
    ex = rig.executors[0]
    return ex.client.job(job_id) is not None


def test_success_reports_started_then_success_with_xcom_and_purges_after_ack(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, sh('echo "hello from nomad"; echo oops >&2; '
                              'printf \'{"rows": 3}\' > "$LEOFLOW_XCOM_RETURN"')))
    end = any_rig.terminal(ex, key)
    outcomes = [e.outcome for e in any_rig.seen[id(ex)] if e.key == key]
    assert outcomes == [TryOutcome.STARTED, TryOutcome.SUCCESS]
    assert end.exit_code == 0 and json.loads(end.xcom_return or "") == {"rows": 3}
    assert end.executor_ref == job_id_for(key) and end.hostname
    job_id = job_id_for(key)
    deadline = time.monotonic() + 10
    while _job_exists(any_rig, job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _job_exists(any_rig, job_id), "the job is purged once its outcome was acknowledged"
    lines = any_rig.logs.read(key).lines  # still there after the purge
    assert {"level": "info", "event": "hello from nomad", "logger": "task.stdout"}.items() <= next(
        line for line in lines if line["logger"] == "task.stdout").items()
    assert any(line["event"] == "oops" and line["level"] == "error" and line["logger"] == "task.stderr"
               for line in lines)
    assert all(set(line) == {"timestamp", "level", "event", "logger"} for line in lines)


def test_submit_is_idempotent_within_and_across_executors(any_rig: NomadRig) -> None:
    first = any_rig.executor()
    second = any_rig.executor().start()  # e.g. a new leader, started before the old one's submit landed
    key = new_key()
    req = request(key, sh("sleep 0.5; echo done"))
    first.submit(req)
    first.submit(req)
    second.submit(req)  # registering again is refused by EnforceIndex: not an error
    third = any_rig.executor()  # a leader started after: adopts the job, does not even register
    third.submit(req)
    assert "register" not in third.client.calls
    assert second.metrics.sample("leoflow_nomad_submits_total", {"result": "existing"}) == 1
    assert first.metrics.sample("leoflow_nomad_submits_total", {"result": "created"}) == 1
    end = any_rig.terminal(second, key)
    assert end.outcome is TryOutcome.SUCCESS
    if any_rig.fake is not None:
        assert any_rig.fake.registrations == 1
        assert any_rig.fake.calls("/v1/client/fs/logs") >= 2


def test_nonzero_exit_fails_with_the_exit_code(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, sh("echo failing; exit 3")))
    end = any_rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.exit_code == 3 and end.reason == "exit code 3"
    assert ex.metrics.sample("leoflow_nomad_tries_finished_total", {"outcome": "failed"}) == 1
    assert any(line["event"] == "failing" for line in any_rig.logs.read(key).lines)


def test_driver_failure_is_a_failed_try_with_the_driver_message(any_rig: NomadRig) -> None:
    if any_rig.fake is not None:
        from tests.fakes.nomad import DriverFailure

        any_rig.fake.script("leoflow.invalid/*", DriverFailure("Failed to pull `leoflow.invalid/nope:0`: not found"))
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, ("true",), driver="docker", image="leoflow.invalid/nope:0"))
    end = any_rig.terminal(ex, key, timeout=60)
    assert end.outcome is TryOutcome.FAILED
    assert end.reason is not None and end.reason.startswith("driver failure:") and "leoflow.invalid/nope" in end.reason


def test_placement_failure_fails_only_after_the_configured_wait(any_rig: NomadRig) -> None:
    ex = any_rig.executor(placement_timeout=1.0)
    key = new_key()
    began = time.monotonic()
    ex.submit(request(key, sh("true"), resources=Resources(cpu=100, memory=50_000_000)))
    early = list(ex.events(0.5))
    if time.monotonic() - began < 0.95:  # (on a badly overloaded machine the wait may already be over)
        assert not [e for e in early if e.key == key], "nothing is reported while Nomad may still place it"
    any_rig.seen.setdefault(id(ex), []).extend(early)
    end = any_rig.terminal(ex, key)
    assert time.monotonic() - began >= 1.0
    assert end.outcome is TryOutcome.FAILED and end.reason is not None
    assert end.reason.startswith("placement failed: Nomad found no node for the task within 1s")
    assert "memory" in end.reason


def test_cancel_stops_the_job_and_reports_the_reason(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, sh("echo started; sleep 60")))
    any_rig.collect(ex, lambda evs: any(e.key == key and e.outcome is TryOutcome.STARTED for e in evs))
    ex.cancel(key, "marked failed by a user")
    end = any_rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.reason == "cancelled: marked failed by a user"
    ex.cancel(key, "again")  # idempotent, also once the job is gone
    ex.cancel(new_key(), "never submitted")


def test_execution_timeout_kills_the_task(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, sh("sleep 60"), timeout_seconds=0.5))
    end = any_rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.reason == "execution_timeout: killed after 0.5s"


def test_logs_are_copied_live_while_the_task_runs(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    key = new_key()
    ex.submit(request(key, sh("echo first; sleep 1.5; echo second")))
    deadline = time.monotonic() + 20
    live = False
    while time.monotonic() < deadline:
        events = [line["event"] for line in any_rig.logs.read(key).lines]
        if "first" in events:
            live = "second" not in events
            break
        list(ex.events(0.05))
    assert live, "the first line reached the log store before the task ended"
    any_rig.terminal(ex, key)
    events = [line["event"] for line in any_rig.logs.read(key).lines if line["logger"] == "task.stdout"]
    assert events == ["first", "second"]


def test_reconcile_stops_orphans_and_reports_missing_tries_without_submitting(any_rig: NomadRig) -> None:
    ex = any_rig.executor()
    live_key, orphan_key, missing_key = new_key("live"), new_key("orphan"), new_key("missing")
    ex.submit(request(live_key, sh("sleep 1")))
    ex.submit(request(orphan_key, sh("sleep 60")))
    any_rig.collect(ex, lambda evs: any(e.key == orphan_key and e.outcome is TryOutcome.STARTED for e in evs))
    leader = any_rig.executor()  # a new leader's executor
    registrations = any_rig.fake.registrations if any_rig.fake is not None else None
    result = leader.reconcile([live_key, missing_key])
    assert result.stopped == [job_id_for(orphan_key)]
    assert result.missing == [missing_key]
    if any_rig.fake is not None:
        assert any_rig.fake.registrations == registrations, "reconcile never submits"
    events = any_rig.collect(leader, lambda evs: any(e.key == missing_key for e in evs)
                             and any(e.key == live_key and e.terminal for e in evs))
    lost = next(e for e in events if e.key == missing_key)
    assert lost.outcome is TryOutcome.LOST and "not found" in (lost.reason or "")
    # Adoption may repeat its STARTED (the scheduler drops it: the try is not live); never an end.
    assert not [e for e in events if e.key == orphan_key and e.terminal], "an orphan's end is not reported"
    orphan_job = job_id_for(orphan_key)
    deadline = time.monotonic() + 15
    while leader.client.job(orphan_job) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leader.client.job(orphan_job) is None, "the stopped orphan is purged after its logs were copied"
