"""Optional mutual TLS: agent and agentrpc certificates issued by Vault PKI, the agent's renewed early."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from leoflow.agent.dial import DialOptions
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.executors.port import TryOutcome
from leoflow.secrets.login import VaultSession
from leoflow.secrets.pki import CertKeeper
from tests.vault.conftest import OpenBao
from tests.vault.rig import VaultRig, provision, running_rig, server_session, token_source, wait_until


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@contextmanager
def tls_rig(openbao: OpenBao, tmp_path: Path) -> Iterator[VaultRig]:
    """agentrpc with a server certificate from Vault PKI that requires client certificates from the same CA."""
    s = openbao.settings
    server_certs = CertKeeper(server_session(openbao, tmp_path), role=s.pki_server_role, common_name="localhost",
                              ip_sans="127.0.0.1", directory=tmp_path / "server-tls", mount=s.pki_mount)
    files = server_certs.ensure()
    home = tmp_path / "home"
    config = openbao.config(home)
    config.server.grpc_tls_cert_file = str(files.cert)
    config.server.grpc_tls_key_file = str(files.key)
    config.server.grpc_tls_client_ca_file = str(files.ca)
    with running_rig(home, config) as rig:
        yield rig


def test_agent_connects_over_mtls_with_vault_certificates_renewed_early(openbao: OpenBao, tmp_path: Path) -> None:
    s = openbao.settings
    stop = threading.Event()
    with tls_rig(openbao, tmp_path) as rig:
        server = rig.server
        try:
            login = provision(openbao, "tls-a", ["default"], tmp_path)
            agent_certs = CertKeeper(VaultSession(login), role=s.pki_agent_role, common_name="tls-a", ttl="6s",
                                     directory=tmp_path / "agent-tls", mount=s.pki_mount)
            mine = agent_certs.ensure()
            assert stat.S_IMODE(mine.key.stat().st_mode) == 0o600
            first_serial = _serial(mine.cert)
            opts = DialOptions(f"127.0.0.1:{server.port}", tls_ca_file=str(mine.ca), tls_cert_file=str(mine.cert),
                               tls_key_file=str(mine.key))
            agent = rig.agent("tls-a", token_source(openbao, login), opts=opts)
            keeper = threading.Thread(target=agent_certs.keep_fresh, args=(stop,), daemon=True)
            keeper.start()
            key = rig.submit("over-tls", ["sh", "-c", "echo hello over mTLS; sleep 4.5"])
            wait_until(lambda: agent_certs.issued >= 2, timeout=15, what="the agent certificate to be renewed")
            assert _serial(mine.cert) != first_serial
            agent.link.drop()  # the next dial presents the renewed certificate
            assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
            wait_until(agent.link.connected.is_set, timeout=10, what="the agent to reconnect with its new certificate")
            # Without a client certificate the handshake itself fails: no token is even looked at.
            creds = grpc.ssl_channel_credentials(root_certificates=mine.ca.read_bytes())
            with grpc.secure_channel(f"127.0.0.1:{server.port}", creds) as channel, \
                    pytest.raises(grpc.RpcError) as info:
                pb_grpc.AgentServiceStub(channel).Register(
                    pb.RegisterRequest(agent_id="x", pools=["default"], capacity=1), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            stop.set()


def test_agent_process_gets_its_certificate_from_vault_by_config(openbao: OpenBao, tmp_path: Path) -> None:
    """[vault] pki_role / pki_dir / pki_ttl: the real leoflow-agent issues its client certificate itself."""
    login = provision(openbao, "proc-tls", ["default"], tmp_path)
    with tls_rig(openbao, tmp_path) as rig:
        env = {**os.environ, "LEOFLOW_HOME": str(rig.home), "LEOFLOW_VAULT__ADDR": openbao.addr,
               "LEOFLOW_VAULT__ROLE_ID_FILE": login.role_id_file,
               "LEOFLOW_VAULT__SECRET_ID_FILE": login.secret_id_file,
               "LEOFLOW_VAULT__PKI_ROLE": openbao.settings.pki_agent_role,
               "LEOFLOW_VAULT__PKI_DIR": str(tmp_path / "proc-tls"), "LEOFLOW_VAULT__PKI_TTL": "1h"}
        argv = [sys.executable, "-m", "leoflow.agent.main", "--server", f"127.0.0.1:{rig.server.port}",
                "--id", "proc-tls", "--pools", "default", "--work-dir", str(tmp_path / "agent"),
                "--metrics-bind", "", "--drain-timeout", "2"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: "proc-tls" in rig.server.service.connected_agents(), timeout=20,
                       what="the agent to connect over mTLS")
            assert rig.wait_terminal(rig.submit("tls-proc", ["true"])).outcome is TryOutcome.SUCCESS
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    cert = x509.load_pem_x509_certificate((tmp_path / "proc-tls" / "cert.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "proc-tls"
    assert stat.S_IMODE((tmp_path / "proc-tls" / "key.pem").stat().st_mode) == 0o600
