"""The Vault side of Nomad tasks: bootstrap trusts Nomad's JWKS; a task's workload identity reads only
its connections and variables (what Nomad's `vault` + `template` blocks rely on)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hvac import exceptions as hvac_exc
from jwt.algorithms import RSAAlgorithm

from leoflow.secrets import bootstrap
from leoflow.secrets.vault import make_client
from tests.vault.conftest import OpenBao

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Jwks(BaseHTTPRequestHandler):
    """Serves a JWKS at Nomad's path, as a Nomad server does on :4646."""

    def do_GET(self) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "nomad-1", "use": "sig", "alg": "RS256"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def nomad_jwks() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _workload_identity(job: str) -> str:
    now = int(time.time())
    return jwt.encode({"aud": "vault.io", "iat": now, "nbf": now, "exp": now + 300, "sub": f"global:default:{job}",
                       "nomad_namespace": "default", "nomad_job_id": job, "nomad_allocation_id": "a1",
                       "nomad_task": "task"}, KEY, algorithm="RS256", headers={"kid": "nomad-1"})


def test_a_nomad_task_identity_reads_declared_secrets_and_nothing_else(openbao: OpenBao, nomad_jwks: str) -> None:
    settings = dataclasses.replace(openbao.settings, nomad_jwks_url=nomad_jwks)
    root = openbao.root()
    first = bootstrap.bootstrap(root, settings)
    assert {c.kind for c in first.changes if c.action == "created"} >= {"nomad-jwt-config", "nomad-jwt-role"}
    assert not bootstrap.bootstrap(root, settings).changed
    s = settings
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/nomad_db", {"conn_uri": "postgres://u:p@h/db"},
                                               mount_point=s.kv_mount)
    task = make_client(openbao.addr)
    task.auth.jwt.jwt_login(s.nomad_role, _workload_identity("lf-dag-task-1"), path=s.nomad_jwt_mount)
    read = task.secrets.kv.v2.read_secret_version(f"{s.connections_path}/nomad_db", mount_point=s.kv_mount,
                                                  raise_on_deleted_version=True)
    assert read["data"]["data"]["conn_uri"] == "postgres://u:p@h/db"
    with pytest.raises(hvac_exc.Forbidden):
        task.secrets.kv.v2.read_secret_version(s.session_key_path, mount_point=s.kv_mount,
                                               raise_on_deleted_version=True)
    with pytest.raises(hvac_exc.Forbidden):  # tasks cannot list what exists
        task.secrets.kv.v2.list_secrets(s.connections_path, mount_point=s.kv_mount)


def test_leoflows_own_jobs_get_roles_only_they_can_use(openbao: OpenBao, nomad_jwks: str) -> None:
    """The jobspecs in nomad/ log in as leoflow-scheduler and leoflow-server: bootstrap creates those
    roles, bound to the job of that name, with what each one's config template reads."""
    s = dataclasses.replace(openbao.settings, nomad_jwks_url=nomad_jwks)
    root = openbao.root()
    bootstrap.bootstrap(root, s)
    assert not bootstrap.bootstrap(root, s).changed
    for name, value in (("consul", {"token": "consul-acl"}), ("nomad", {"token": "nomad-acl"}),
                        ("server", {"jwt_secret": "j" * 40})):
        root.secrets.kv.v2.create_or_update_secret(f"leoflow/{name}", value, mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.variables_path}/sched_var", {"value": "v"}, mount_point=s.kv_mount)

    def login(role: str, job: str) -> object:
        client = make_client(openbao.addr)
        client.auth.jwt.jwt_login(role, _workload_identity(job), path=s.nomad_jwt_mount)
        return client

    def read(client: object, path: str) -> dict[str, object]:
        got = client.secrets.kv.v2.read_secret_version(path, mount_point=s.kv_mount,  # type: ignore[attr-defined]
                                                        raise_on_deleted_version=True)
        return dict(got["data"]["data"])

    scheduler = login("leoflow-scheduler", "leoflow-scheduler")
    assert read(scheduler, "leoflow/nomad") == {"token": "nomad-acl"}
    assert read(scheduler, "leoflow/consul") == {"token": "consul-acl"}
    assert read(scheduler, f"{s.variables_path}/sched_var") == {"value": "v"}  # masking and pre-dispatch checks
    with pytest.raises(hvac_exc.Forbidden):
        read(scheduler, "leoflow/server")
    server = login("leoflow-server", "leoflow-server")
    assert read(server, "leoflow/server")["jwt_secret"] == "j" * 40
    with pytest.raises(hvac_exc.Forbidden):
        read(server, "leoflow/nomad")
    for role in ("leoflow-scheduler", "leoflow-server"):  # any other job is refused
        with pytest.raises(hvac_exc.VaultError):
            login(role, "lf-dag-task-1")
