"""A Nomad try never runs silently without a secret it declares (adr/0099).

Nomad's template renders a KV path Vault does not have as nothing, so ``submit`` checks every
declared id with the delivery's lookup (real OpenBao, the SQLite store as fallback) before it
registers a job. Each refused try must leave no job in the (fake, real-HTTP) Nomad, a FAILED event
with the reason, and the reason in the try's log; Vault being unreachable holds the try queued
(``submit`` raises, as for any infrastructure failure) for the agents path's grace, then fails it.
"""

from __future__ import annotations

import json

import hvac
import pytest

from leoflow.domain.records import Connection, Variable
from leoflow.executors.nomad import NomadExecutor
from leoflow.executors.nomad.jobspec import job_id_for
from leoflow.executors.port import TryEvent, TryKey, TryOutcome
from leoflow.secrets.backend import SecretsBackend, SecretsUnavailable, VaultKv
from leoflow.secrets.delivery import TaskSecrets
from leoflow.secrets.vault import make_client
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository
from tests.vault.conftest import OpenBao
from tests.vault.nomad_rig import NomadVault, closed_port, new_key, py_request

STORE_PASSWORD = "store-held-pw-4411"


class Clock:
    """Monotonic seconds the test moves by hand (the grace is a minute; the test takes none)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _paths(openbao: OpenBao) -> tuple[str, str]:
    s = openbao.settings
    return f"{s.kv_mount}/{s.connections_path}", f"{s.kv_mount}/{s.variables_path}"


def _refused(nv: NomadVault, ex: NomadExecutor, key: TryKey) -> TryEvent:
    """The FAILED event of a try refused at submit, after proving Nomad never saw a job for it."""
    event = nv.events(ex, key, TryOutcome.FAILED, timeout=5.0)
    assert event.reason
    assert nv.fake.job(job_id_for(key)) is None
    assert all(job["ID"] != job_id_for(key) for job in nv.fake.submitted), "a job was registered"
    assert f"cannot run on Nomad: {event.reason}" in nv.lines(key), "the reason is in the try's log"
    return event


def _store(nv: NomadVault) -> tuple[ConnectionRepository, VariableRepository]:
    ks = Keyspace(nv.config.store.prefix)
    return ConnectionRepository(nv.store, ks), VariableRepository(nv.store, ks)


def test_vault_held_secrets_reach_the_task_through_the_template_only(nv: NomadVault, openbao: OpenBao) -> None:
    """Chain of custody: Vault KV -> Nomad template -> task env; never the job spec or the logs."""
    password = 'p@ss:/?#"word'
    s = openbao.settings
    root = openbao.root()
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/warehouse",
                                               {"conn_uri": f"postgres://u:{password}@db/x"}, mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/api", {
        "conn_type": "http", "host": "api.example", "password": password}, mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.variables_path}/token", {"value": f"multi\nline {password}"},
                                               mount_point=s.kv_mount)
    # Held in the store as well: Vault wins, as in delivery, and the check passes.
    _store(nv)[0].create(Connection("api", "http", host="stale.example", password="stale-password"))
    nv.config.nomad.vault_role = "leoflow-task"
    ex = nv.executor()
    key = new_key("uses_vault")
    code = ("import os,json;e=os.environ;"
            "json.dump({'w': e['AIRFLOW_CONN_WAREHOUSE'], 'a': json.loads(e['AIRFLOW_CONN_API']),"
            "'t': e['AIRFLOW_VAR_TOKEN']}, open(e['LEOFLOW_XCOM_RETURN'],'w'))")
    ex.submit(py_request(key, code, connections=("warehouse", "api"), variables=("token",)))
    end = nv.events(ex, key, TryOutcome.SUCCESS)
    assert json.loads(end.xcom_return or "") == {
        "w": f"postgres://u:{password}@db/x", "a": {"conn_type": "http", "host": "api.example", "password": password},
        "t": f"multi\nline {password}"}
    (job,) = [j for j in nv.fake.submitted if j["ID"] == job_id_for(key)]
    assert password not in json.dumps(job), "no secret value in the job spec"
    assert job["TaskGroups"][0]["Tasks"][0]["Vault"] == {"Role": "leoflow-task", "ChangeMode": "noop"}
    assert password not in "\n".join(nv.lines(key))
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "created"}) == 1


def test_a_secret_held_only_in_the_store_fails_the_try_without_a_job(nv: NomadVault, openbao: OpenBao) -> None:
    conns, variables = _store(nv)
    conns.create(Connection("nm_store_db", "postgres", host="h", login="u", password=STORE_PASSWORD))
    variables.create(Variable("nm_store_var", "store-value-1234"))
    ex = nv.executor()  # from_config: Vault (the server AppRole) first, the store as fallback
    key = new_key("store_only")
    # nm_db and nm_token are in Vault: only the store-held ids are named.
    ex.submit(py_request(key, "print('must not run')", connections=("nm_db", "nm_store_db"),
                         variables=("nm_token", "nm_store_var")))
    event = _refused(nv, ex, key)
    conn_path, var_path = _paths(openbao)
    assert event.reason == (
        "connection 'nm_store_db' is held in the Leoflow store, but Nomad tasks receive secrets only from Vault "
        f"({conn_path}/nm_store_db): move it to Vault or run the task on an agent queue; "
        "variable 'nm_store_var' is held in the Leoflow store, but Nomad tasks receive secrets only from Vault "
        f"({var_path}/nm_store_var): move it to Vault or run the task on an agent queue")
    assert STORE_PASSWORD not in "\n".join(nv.lines(key))
    assert nv.fake.registrations == 0
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "secrets_refused"}) == 1
    assert ex.metrics.sample("leoflow_nomad_tries_finished_total", {"outcome": "failed"}) == 1
    # The same try submitted again (a scheduler retrying its submit) is not run and not reported twice.
    conns.delete("nm_store_db")
    ex.submit(py_request(key, "print('must not run')", connections=("nm_db",)))
    assert [e for e in ex.events(0.3) if e.key == key] == []
    assert nv.fake.registrations == 0


def test_a_secret_found_nowhere_fails_the_try_naming_where_leoflow_looked(nv: NomadVault, openbao: OpenBao) -> None:
    ex = nv.executor()
    key = new_key("nowhere")
    ex.submit(py_request(key, "print('must not run')", connections=("nm_nowhere",), variables=("nm_no_var",)))
    event = _refused(nv, ex, key)
    conn_path, var_path = _paths(openbao)
    # The agents path's own text (delivery: SecretsBackend.missing_message), one per id.
    assert event.reason == (
        f"connection 'nm_nowhere' is declared by the task but was found in neither Vault ({conn_path}/nm_nowhere) "
        f"nor the store; variable 'nm_no_var' is declared by the task but was found in neither Vault "
        f"({var_path}/nm_no_var) nor the store")
    bad = new_key("bad_id")
    ex.submit(py_request(bad, "print('must not run')", connections=("no such id",)))
    assert _refused(nv, ex, bad).reason == "connection id 'no such id' is not valid"
    assert nv.fake.registrations == 0
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "secrets_refused"}) == 2


def test_vault_unreachable_holds_the_try_then_fails_it_after_the_grace(nv: NomadVault, openbao: OpenBao) -> None:
    """Never run without the secret, never fail on a blip: ``submit`` raises (the scheduler keeps the
    try queued and submits again without spending a try) until the grace is over, then the try fails."""
    root = openbao.root()
    # Nothing listens there: a real connection refused. The placeholder token is never accepted anywhere.
    dead = make_client(f"http://127.0.0.1:{closed_port()}", token="placeholder", timeout=2.0)
    source: list[hvac.Client] = [dead]
    asked: list[int] = []

    def client() -> hvac.Client:
        asked.append(1)
        return source[0]

    s = openbao.settings
    conns, variables = _store(nv)
    kv = VaultKv(client, mount=s.kv_mount, connections_path=s.connections_path, variables_path=s.variables_path)
    clock = Clock()
    secrets = TaskSecrets(SecretsBackend(conns, variables, kv), clock=clock)
    assert secrets.unavailable_grace == 60.0  # the agents path's grace, shared
    ex = nv.executor(secrets, clock=clock)
    key = new_key("vault_down")
    request = py_request(key, "print('must not run')", connections=("nm_db",))
    with pytest.raises(SecretsUnavailable, match=r"waits for Vault \(0s of 60s\)"):
        ex.submit(request)
    note = next(ln for ln in nv.lines(key) if ln.startswith("waiting for Vault"))
    assert note.endswith("no job is registered meanwhile: read connection 'nm_db' from Vault: cannot reach Vault "
                         "(ConnectionError)"), note
    # A second try within the probe interval is held on the same outage without asking Vault again.
    other = new_key("vault_down_too")
    calls = len(asked)
    with pytest.raises(SecretsUnavailable):
        ex.submit(py_request(other, "print('must not run')", variables=("nm_token",)))
    assert len(asked) == calls
    clock.now += 30
    with pytest.raises(SecretsUnavailable, match=r"\(30s of 60s\)"):
        ex.submit(request)
    assert len(asked) > calls  # the next probe did ask
    assert sum(ln.startswith("waiting for Vault") for ln in nv.lines(key)) == 1  # noted once
    assert nv.fake.registrations == 0
    clock.now += 31
    ex.submit(request)  # past the grace: fails now, still without a job
    event = _refused(nv, ex, key)
    assert event.reason is not None
    assert event.reason.startswith("declared secrets could not be checked in Vault for 61s: ")
    assert event.reason.endswith("read connection 'nm_db' from Vault: cannot reach Vault (ConnectionError)")
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "secrets_pending"}) == 3
    assert ex.metrics.sample("leoflow_nomad_submits_total", {"result": "secrets_refused"}) == 1

    # Vault answers again within the other try's grace: it is registered and gets its secret.
    source[0] = root
    clock.now += 5  # past the probe interval
    ex.submit(py_request(other, "import os;print('len', len(os.environ['AIRFLOW_VAR_NM_TOKEN']))",
                         variables=("nm_token",)))
    assert nv.events(ex, other, TryOutcome.SUCCESS).exit_code == 0
    assert nv.fake.registrations == 1
    assert any(job["ID"] == job_id_for(other) for job in nv.fake.submitted)
