"""Nomad tries: the executor masks the declared secrets in every log line it copies (adr/0097).

The fake Nomad runs each try as a real process and renders the task's Vault template from the real
OpenBao (by the same KV v2 API paths Nomad's template runner reads), so the task really receives
``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` from Vault. The executor is built by ``from_config`` exactly as
the scheduler builds it (Vault login with the server's AppRole, the SQLite store as fallback). A
scheduler failover is a second executor adopting the running job: it knows the declared ids only
from the job in Nomad, and must mask the lines it copies all the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from leoflow.domain.records import Connection
from leoflow.executors.nomad import JobSettings, NomadClient, Settings, build_job
from leoflow.executors.nomad.jobspec import META_CONNECTIONS, META_VARIABLES, job_id_for, register_body
from leoflow.executors.port import TryOutcome
from leoflow.secrets.backend import SecretsBackend, VaultKv
from leoflow.secrets.delivery import TaskSecrets
from leoflow.secrets.vault import make_client
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository
from tests.vault.conftest import OpenBao
from tests.vault.nomad_rig import NASTY, TOKEN_VALUE, NomadVault, closed_port, new_key, py_request
from tests.vault.rig import wait_until

STORE_PASSWORD = "store-only-pw-77"

# Prints its secrets before and after a gate file appears (the failover happens in between).
TASK = r"""
import json, os, pathlib, sys, time
from urllib.parse import quote
raw = os.environ["AIRFLOW_CONN_NM_DB"]  # the template renders a fields secret as Airflow's JSON form
password = json.loads(raw)["password"]
token = os.environ["AIRFLOW_VAR_NM_TOKEN"]
print("before: password is", password, flush=True)
print("before: token is", token, flush=True)
print("before: conn is", raw, flush=True)
gate = pathlib.Path(os.environ["GATE"])
deadline = time.monotonic() + 30
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("after: password is", password, flush=True)
print("after: encoded password is", quote(password, safe=""), flush=True)
print("after: json password is", json.dumps(password), flush=True)
print("after: token is", token, file=sys.stderr, flush=True)
print("after: plain text stays", flush=True)
"""

# Declares nothing: sees no secret env, and its own output (which happens to contain the other
# try's variable value, handed in through its plain env) is written as printed.
BYSTANDER = r"""
import os
print("visible:", sorted(n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))), flush=True)
print("echo:", os.environ["ECHO"], flush=True)
"""


def _assert_clean(text: str) -> None:
    for secret in (NASTY, quote(NASTY, safe=""), json.dumps(NASTY)[1:-1], "p@ss:w/rd?#\\u0026", TOKEN_VALUE):
        assert secret not in text, "a secret value reached the task log"


def test_nomad_task_log_is_masked_also_after_a_failover_adopts_the_try(nv: NomadVault, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = nv.executor()
    key = new_key("uses_secrets")
    bystander = new_key("declares_nothing")
    first.submit(py_request(key, TASK, connections=("nm_db",), variables=("nm_token",), env={"GATE": str(gate)}))
    first.submit(py_request(bystander, BYSTANDER, env={"ECHO": TOKEN_VALUE}))
    nv.events(first, key, TryOutcome.STARTED)
    wait_until(lambda: any(ln.startswith("before: conn is") for ln in nv.lines(key)), 15,
               "the first leader's copy of the task's lines")
    # The task got the real values from Vault (the template) and printed them: stored masked.
    before = nv.lines(key)
    assert "before: password is ***" in before and "before: token is ***" in before
    conn_line = next(ln for ln in before if ln.startswith("before: conn is"))
    assert '"password": "***"' in conn_line or '"password":"***"' in conn_line, conn_line
    assert "db.internal" in conn_line  # only the secret part is hidden
    _assert_clean("\n".join(before))

    # The bystander ran beside it under the same executor: no secret env, its output as printed.
    assert nv.events(first, bystander, TryOutcome.SUCCESS)
    wait_until(lambda: f"echo: {TOKEN_VALUE}" in nv.lines(bystander), 10, "the bystander's output")
    assert "visible: []" in nv.lines(bystander)
    assert "***" not in "\n".join(nv.lines(bystander))

    # Failover: the leader dies (its executor goes away with the process); a new one adopts the job.
    first.close()
    second = nv.executor()
    result = second.reconcile([key])
    assert result.missing == [] and result.stopped == []
    assert job_id_for(key) in second.tracked()
    gate.write_text("go")
    event = nv.events(second, key, TryOutcome.SUCCESS)
    assert event.exit_code == 0
    lines = nv.lines(key)
    _assert_clean("\n".join(lines))
    assert "after: password is ***" in lines and "after: encoded password is ***" in lines
    assert 'after: json password is "***"' in lines
    assert "after: token is ***" in lines and "after: plain text stays" in lines
    assert lines.count("before: password is ***") == 1  # the new leader skipped what was copied already
    stderr = [ln.record for ln in nv.logs.iter_lines(key) if ln.record.get("logger") == "task.stderr"]
    assert [r["event"] for r in stderr] == ["after: token is ***"]

    # The job spec names what the task declares, never a value.
    spec = next(j for j in nv.fake.submitted if j["ID"] == job_id_for(key))
    assert (spec["Meta"][META_CONNECTIONS], spec["Meta"][META_VARIABLES]) == ("nm_db", "nm_token")
    _assert_clean(json.dumps(spec))
    task = spec["TaskGroups"][0]["Tasks"][0]
    assert not any(k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")) for k in task["Env"])


def test_lines_wait_while_vault_is_unreachable_and_are_written_masked_after(nv: NomadVault, openbao: OpenBao,
                                                                            tmp_path: Path) -> None:
    """Vault down for the executor while an adopted try runs: nothing unmasked is stored; once it
    answers, the lines follow masked. The job was registered before submit checked secrets
    (adr/0099), as an older leader did: a declared id found nowhere is named in the log, and the
    store fallback masks a store-held password."""
    root = openbao.root()
    # Nothing listens there: connection refused, a real outage. The token is never sent anywhere.
    dead = make_client(f"http://127.0.0.1:{closed_port()}", token="unused", timeout=2.0)
    source = [dead]
    s = openbao.settings
    kv = VaultKv(lambda: source[0], mount=s.kv_mount, connections_path=s.connections_path,
                 variables_path=s.variables_path)
    ks = Keyspace(nv.config.store.prefix)
    conns = ConnectionRepository(nv.store, ks)
    conns.create(Connection("nm_store_db", "postgres", host="h", login="u", password=STORE_PASSWORD))
    secrets = TaskSecrets(SecretsBackend(conns, VariableRepository(nv.store, ks), kv))
    key = new_key("waits_for_vault")
    gate = tmp_path / "gate"
    code = ("import os,pathlib,time;g=pathlib.Path(os.environ['GATE']);d=time.monotonic()+30\n"
            "while not g.exists() and time.monotonic()<d: time.sleep(0.05)\n"
            "print('token is', os.environ['AIRFLOW_VAR_NM_TOKEN'], flush=True)\n"
            f"print('store pw is {STORE_PASSWORD}', flush=True)")
    request = py_request(key, code, connections=("nm_store_db", "nm_gone"), variables=("nm_token",),
                         env={"GATE": str(gate)})
    older = NomadClient(Settings(addr=nv.fake.addr))
    try:
        created, _ = older.register(register_body(build_job(request, JobSettings())))
    finally:
        older.close()
    assert created
    ex = nv.executor(secrets)
    ex.start()  # adopts the job, as a new leader does
    assert job_id_for(key) in ex.tracked()
    gate.write_text("go")
    wait_until(lambda: any("held back" in ln for ln in nv.lines(key)), 15, "the held-back note")
    held = nv.lines(key)
    assert not any(ln.startswith(("token is", "store pw is")) for ln in held)  # nothing written unmasked
    _assert_clean("\n".join(held))
    source[0] = root  # Vault is back
    event = nv.events(ex, key, TryOutcome.SUCCESS)
    assert event.exit_code == 0
    wait_until(lambda: "token is ***" in nv.lines(key), 10, "the masked lines")
    lines = nv.lines(key)
    assert "store pw is ***" in lines
    assert any(ln.startswith("connection 'nm_gone' is declared by the task but was found in neither Vault")
               and ln.endswith("its value cannot be masked in this log") for ln in lines)
    text = "\n".join(lines)
    _assert_clean(text)
    assert STORE_PASSWORD not in text
