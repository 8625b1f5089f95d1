"""Executor behaviour only the fake can stage: OOM, lost allocations, rotation, broken streams,
events disabled, ACLs, the API-call budget per try, and failover adoption."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from leoflow.config import Config, NomadConfig
from leoflow.executors.nomad import JobSettings, NomadClient, NomadError, NomadExecutor, Settings, job_id_for
from leoflow.executors.port import TryOutcome
from leoflow.logs.store import LogStore
from tests.fakes.nomad import OOM, FakeNomad, Running

from .conftest import NomadRig, new_key, py, request, sh


def test_oom_kill_is_a_failed_try_naming_the_memory_limit(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor()
    key = new_key("hog")
    fake_nomad.script(job_id_for(key), Running(0.1, stdout=b"allocating\n"), OOM())
    ex.submit(request(key, sh("true")))
    end = rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.exit_code == 137
    assert end.reason == "OOM killed: the task went over its memory limit of 64 MiB (exit code 137)"


def test_lost_allocation_is_reported_lost_not_failed(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor()
    key = new_key()
    ex.submit(request(key, sh("echo up; sleep 60")))
    rig.collect(ex, lambda evs: any(e.outcome is TryOutcome.STARTED for e in evs))
    fake_nomad.lose(job_id_for(key))
    end = rig.terminal(ex, key)
    assert end.outcome is TryOutcome.LOST
    assert end.reason == "Nomad allocation lost: alloc is lost since its node is down"
    assert ex.metrics.sample("leoflow_nomad_tries_finished_total", {"outcome": "lost"}) == 1


def test_logs_follow_across_rotated_files_in_order(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor(log_max_files=10)
    key = new_key()
    # ~20 KB per stream with the fake rotating every 4 KB: five files per stream.
    code = ("import sys,time\n"
            "for i in range(400):\n"
            "    print(f'line {i:04d} ' + 'x'*40, flush=True)\n"
            "    if i % 100 == 0: time.sleep(0.05)\n")
    ex.submit(request(key, py(code)))
    end = rig.terminal(ex, key)
    assert end.outcome is TryOutcome.SUCCESS, end.reason
    lines = [line["event"] for line in rig.logs.read(key).lines if line["logger"] == "task.stdout"]
    assert lines == [f"line {i:04d} " + "x" * 40 for i in range(400)]
    assert ex.metrics.sample("leoflow_nomad_log_lines_total") >= 400


def test_a_broken_event_stream_reconnects_and_loses_nothing(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor()
    key = new_key()
    ex.submit(request(key, sh("sleep 0.8; exit 4")))
    rig.collect(ex, lambda evs: any(e.outcome is TryOutcome.STARTED for e in evs))
    fake_nomad.drop_streams()
    end = rig.terminal(ex, key)
    assert end.exit_code == 4
    assert ex.metrics.sample("leoflow_nomad_watch_reconnects_total", {"mode": "events"}) >= 1
    streams = [q for m, p, q in fake_nomad.requests if p == "/v1/event/stream"]
    assert len(streams) >= 2 and int(streams[-1]["index"][0]) > 1, "reconnects from the last index seen"
    assert streams[0]["topic"] == ["Allocation", "Job"] and streams[0]["namespace"] == ["default"]


def test_blocking_queries_are_the_fallback_when_events_are_refused(tmp_path: Path) -> None:
    with FakeNomad(events_enabled=False, heartbeat=0.3) as fake:
        rig = NomadRig(fake.addr, "", LogStore(tmp_path / "logs"), fake)
        ex = rig.executor()
        try:
            key = new_key()
            ex.submit(request(key, sh("echo via blocking; exit 0")))
            assert rig.terminal(ex, key).outcome is TryOutcome.SUCCESS
            assert ex.feed is not None and ex.feed.mode == "blocking"
            polls = [q for m, p, q in fake.requests if p == "/v1/allocations" and "index" in q]
            assert polls and all(q["wait"] == ["2s"] for q in polls)
        finally:
            ex.close()


def test_api_calls_per_try_are_at_most_three_besides_log_streaming(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor().start()
    keys = [new_key(f"t{i}") for i in range(5)]
    before = len(fake_nomad.requests)
    for key in keys:
        ex.submit(request(key, sh("echo hi")))
    for key in keys:
        rig.terminal(ex, key)
    job_ids = {job_id_for(k) for k in keys}
    rig.collect(ex, lambda evs: all(fake_nomad.job(j) is None for j in job_ids))
    calls = list(fake_nomad.requests)[before:]
    per_try = [p for _, p, _ in calls if not p.startswith(("/v1/client/fs/logs", "/v1/event/stream"))]
    assert len(per_try) <= 3 * len(keys), per_try
    assert not [p for p in per_try if p.endswith("/allocations")], "no polling per running task"


def test_a_new_executor_adopts_jobs_and_reports_a_try_that_ended_meanwhile(rig: NomadRig,
                                                                         fake_nomad: FakeNomad) -> None:
    old = rig.executor()
    key = new_key()
    old.submit(request(key, sh("echo before failover; exit 0")))
    old.close()  # the leader dies before it reported anything
    fake_nomad.wait_for(lambda: bool(fake_nomad.allocs_of(job_id_for(key)))
                        and fake_nomad.allocs_of(job_id_for(key))[0]["ClientStatus"] == "complete")
    new = rig.executor()
    end = rig.terminal(new, key)
    assert end.outcome is TryOutcome.SUCCESS
    lines = [line["event"] for line in rig.logs.read(key).lines if line["logger"] == "task.stdout"]
    assert lines == ["before failover"], "logs are not duplicated when a second executor copies them"


def test_a_job_spec_nomad_cannot_take_fails_the_try_instead_of_retrying_forever(rig: NomadRig) -> None:
    ex = rig.executor()
    key = new_key()
    ex.submit(request(key, ("true",), driver="docker", image=None))
    end = rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.reason == "task 't': the docker driver needs an image"
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "rejected"}) == 1
    # Nomad's own validation (a 500 with its multierror text) is a rejection too, not an outage.
    rig.fake.fail("/v1/jobs", status=500, body="1 error occurred:\n\t* Task main: invalid CPU value\n\n")
    bad = new_key()
    ex.submit(request(bad, sh("true")))
    end = rig.terminal(ex, bad)
    assert end.outcome is TryOutcome.FAILED and end.reason is not None
    assert end.reason.startswith("Nomad refused the job: ") and "invalid CPU value" in end.reason


def test_nomad_down_raises_so_the_scheduler_retries_the_submit(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = rig.executor().start()
    fake_nomad.fail("/v1/jobs", count=1, status=500, body="rpc error: No cluster leader")
    key = new_key()
    with pytest.raises(NomadError, match="No cluster leader"):
        ex.submit(request(key, sh("true")))
    ex.submit(request(key, sh("true")))  # the scheduler's retry: same try, same job id
    assert rig.terminal(ex, key).outcome is TryOutcome.SUCCESS
    assert ex.metrics.sample("leoflow_nomad_submit_seconds_count") == 1


def test_acl_token_is_sent_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    with FakeNomad(acl_tokens={"s3cret"}, heartbeat=0.3) as fake:
        rig = NomadRig(fake.addr, "s3cret", LogStore(tmp_path / "logs"), fake)
        try:
            ex = rig.executor()
            key = new_key()
            ex.submit(request(key, sh("true")))
            assert rig.terminal(ex, key).outcome is TryOutcome.SUCCESS
            bad = rig.executor(token="wrong")
            with pytest.raises(NomadError) as err:
                bad.submit(request(new_key(), sh("true")))
            assert err.value.status == 403 and "Permission denied" in str(err.value)
        finally:
            for ex in rig.executors:
                ex.close()


def test_settings_come_from_config_with_tls_verification_on_by_default(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    s = Settings.from_config(NomadConfig(addr="https://nomad.example:4646/", token_file=str(token_file),
                                         namespace="leoflow", region="eu"))
    assert s.verify is True and s.token == "from-file" and s.addr == "https://nomad.example:4646"
    s = Settings.from_config(NomadConfig(ca_file="/etc/nomad/ca.pem", cert_file="c.pem", key_file="k.pem"))
    assert s.verify == "/etc/nomad/ca.pem" and s.cert == ("c.pem", "k.pem")
    with pytest.raises(NomadError, match=r"nomad\.cert_file and nomad\.key_file"):
        Settings.from_config(NomadConfig(cert_file="c.pem"))
    with pytest.raises(NomadError, match=r"nomad\.token_file"):
        Settings.from_config(NomadConfig(token_file=str(tmp_path / "missing")))
    cfg = Config()
    cfg.nomad.meta = "team=data, tier=batch"
    cfg.nomad.datacenters = "dc1, dc2"
    ex = NomadExecutor.from_config(cfg, None)
    try:
        assert ex.jobs.meta == {"team": "data", "tier": "batch"} and ex.jobs.datacenters == ("dc1", "dc2")
        assert ex.client._req.verify is True and ex.client._req.timeout == 15.0  # not python-nomad's 5 s / False
    finally:
        ex.close()
    cfg.nomad.meta = "oops"
    with pytest.raises(NomadError, match=r"nomad\.meta"):
        NomadExecutor.from_config(cfg, None)


def test_the_environment_cannot_redirect_the_client(monkeypatch: pytest.MonkeyPatch, rig: NomadRig) -> None:
    """python-nomad's façade lets NOMAD_ADDR/NOMAD_TOKEN override arguments; our transport does not."""
    monkeypatch.setenv("NOMAD_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("NOMAD_TOKEN", "ambient")
    ex = rig.executor()
    key = new_key()
    ex.submit(request(key, sh("true")))
    assert rig.terminal(ex, key).outcome is TryOutcome.SUCCESS
    assert ex.client._req.token is None


def test_submit_latency_is_recorded(rig: NomadRig) -> None:
    ex = rig.executor()
    key = new_key()
    started = time.perf_counter()
    ex.submit(request(key, sh("true")))
    assert ex.metrics.sample("leoflow_nomad_submit_seconds_sum") <= time.perf_counter() - started
    rig.terminal(ex, key)


def test_declared_secrets_without_vault_for_the_scheduler_fail_the_try_without_a_job(tmp_path: Path) -> None:
    """Nomad tasks get secrets only from Vault. A scheduler with no Vault (no ``secrets``, or
    ``from_config`` with a store but no ``[vault]`` login) cannot check or deliver them: the try
    fails at submit, no job is registered, even though this Nomad could render the template.
    (Vault-held secrets reaching the task: tests/vault/test_nomad_secret_checks.py, real OpenBao.)"""
    from leoflow.domain.records import Connection
    from leoflow.store.repos.base import Keyspace
    from leoflow.store.repos.connections import ConnectionRepository
    from leoflow.store.sqlite import SqliteStore

    secrets = {"secret/data/leoflow/connections/warehouse": {"data": {"conn_uri": "postgres://u:pw-123456@db/x"}}}
    with FakeNomad(vault_secrets=secrets, heartbeat=0.3) as fake:
        rig = NomadRig(fake.addr, "", LogStore(tmp_path / "logs"), fake)
        bare = rig.executor()  # secrets=None
        cfg = Config(home=str(tmp_path / "home"))
        cfg.nomad.addr = fake.addr
        store = SqliteStore(tmp_path / "store.db", session_ttl_min=1.0)
        ConnectionRepository(store, Keyspace(cfg.store.prefix)).create(
            Connection("warehouse", "postgres", host="db", password="pw-123456"))
        configured = NomadExecutor.from_config(cfg, store)
        try:
            assert configured.secrets is not None and configured.secrets.backend.vault is None
            for ex, detail in ((bare, "no secrets backend"),
                               (configured, "no [vault] login, or [vault] secrets_enabled = false")):
                key = new_key()
                ex.submit(request(key, py("print('must not run')"), connections=("warehouse",),
                                  variables=("token",)))
                end = rig.terminal(ex, key, timeout=5.0)
                assert end.outcome is TryOutcome.FAILED
                assert end.reason == (
                    "the task declares connection 'warehouse', variable 'token', but Vault is not configured for "
                    f"the scheduler ({detail}), and Nomad tasks receive secrets only from Vault: configure [vault] "
                    "for the scheduler (addr and a login, secrets_enabled = true) or run the task on an agent queue")
                lines = [line["event"] for line in ex.logs.read(key).lines]
                assert f"cannot run on Nomad: {end.reason}" in lines
                assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "secrets_refused"}) == 1
            assert fake.registrations == 0 and fake.submitted == []
            # A task that declares nothing still runs on the same executors.
            for ex in (bare, configured):
                key = new_key()
                ex.submit(request(key, sh("true")))
                assert rig.terminal(ex, key).outcome is TryOutcome.SUCCESS
            assert fake.registrations == 2
        finally:
            bare.close()
            configured.close()
            store.close()


def test_tls_is_verified_with_the_configured_ca_and_client_certificate(tmp_path: Path) -> None:
    import ssl

    from tests.fakes.tlscerts import make_pki

    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mTLS: Nomad's verify_https_client
    with FakeNomad(ssl_context=ctx, heartbeat=0.3) as fake:
        logs = LogStore(tmp_path / "logs")
        good = NomadExecutor(NomadClient(Settings.from_config(NomadConfig(
            addr=fake.addr, ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key)))),
            logs, JobSettings(), read_timeout=5.0)
        unverified = NomadExecutor(NomadClient(Settings.from_config(NomadConfig(
            addr=fake.addr, cert_file=str(pki.client_cert), key_file=str(pki.client_key)))), logs, JobSettings())
        rig = NomadRig(fake.addr, "", logs, fake, executors=[good, unverified])
        try:
            key = new_key()
            good.submit(request(key, sh("echo over tls")))
            assert rig.terminal(good, key).outcome is TryOutcome.SUCCESS
            with pytest.raises(NomadError, match="CERTIFICATE_VERIFY_FAILED"):
                unverified.submit(request(new_key(), sh("true")))
        finally:
            for ex in rig.executors:
                ex.close()


def test_events_nomad_dropped_are_caught_by_the_periodic_resync(rig: NomadRig, fake_nomad: FakeNomad) -> None:
    ex = NomadExecutor(NomadClient(Settings(addr=fake_nomad.addr)), rig.logs, JobSettings(), read_timeout=5.0,
                       resync_interval=0.3)
    rig.executors.append(ex)
    key = new_key()
    fake_nomad.muted.add(job_id_for(key))  # none of this job's events reach the stream
    ex.submit(request(key, sh("echo quiet; exit 5")))
    end = rig.terminal(ex, key)
    assert end.outcome is TryOutcome.FAILED and end.exit_code == 5
    assert ex.metrics.sample("leoflow_nomad_resyncs_total") >= 1


def test_reconcile_purges_a_finished_orphan_only_after_copying_its_logs(rig: NomadRig,
                                                                        fake_nomad: FakeNomad) -> None:
    old = rig.executor()
    key = new_key("orphan")
    old.submit(request(key, sh("echo last words")))
    fake_nomad.wait_for(lambda: bool(fake_nomad.allocs_of(job_id_for(key)))
                        and fake_nomad.allocs_of(job_id_for(key))[0]["ClientStatus"] == "complete")
    old.close()  # died before reporting; meanwhile a user cleared the task: the try is no longer live
    new = rig.executor()
    result = new.reconcile([])
    assert result.stopped == [] and result.missing == []
    # Either the finisher saw the orphan mark (purged, nothing reported) or it had already reported
    # (a stale event the scheduler drops; purged once acknowledged): purged in both cases.
    deadline = time.monotonic() + 10
    while fake_nomad.job(job_id_for(key)) is not None and time.monotonic() < deadline:
        list(new.events(0.05))  # acknowledges whatever was reported
    assert fake_nomad.job(job_id_for(key)) is None
    lines = [line["event"] for line in rig.logs.read(key).lines if line["logger"] == "task.stdout"]
    assert lines == ["last words"], "the logs were copied before the purge"
