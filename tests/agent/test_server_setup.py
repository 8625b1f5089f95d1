"""agentrpc as a process and its listener rules: TLS, loopback-only plaintext, the CLI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from leoflow.agent.auth import LocalTokenSource
from leoflow.agent.dial import AgentIdentityInfo, DialError, DialOptions, Link, make_channel
from leoflow.agent.runner import Runner
from leoflow.agentrpc.localkeys import LocalIssuer, LocalKeyPaths
from leoflow.agentrpc.server import AgentRpcServer, ServerSetupError
from leoflow.config import Config
from leoflow.executors.port import TryOutcome
from leoflow.store.sqlite import SqliteStore
from tests.agent.conftest import wait_until


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_plaintext_refused_off_loopback(tmp_path: Path) -> None:
    config = Config(home=str(tmp_path / "h"))
    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    with pytest.raises(ServerSetupError, match="not a loopback address"):
        AgentRpcServer(config, store, bind="0.0.0.0:0").start()
    with pytest.raises(DialError, match=r"agent TLS file .*missing-ca\.pem: No such file"):
        make_channel(DialOptions("agents.example:8793", tls_ca_file=str(tmp_path / "missing-ca.pem")))


def test_tls_end_to_end(tmp_path: Path) -> None:
    from leoflow.executors.agents import AgentsExecutor
    from leoflow.executors.port import TryKey, TryRequest

    cert, key = _self_signed(tmp_path)
    home = tmp_path / "h"
    config = Config(home=str(home))
    config.server.grpc_tls_cert_file = str(cert)
    config.server.grpc_tls_key_file = str(key)
    store = SqliteStore(home / "db", session_ttl_min=0.1)
    server = AgentRpcServer(config, store, bind="127.0.0.1:0")
    port = server.start()
    try:
        # Plaintext against the TLS port fails; TLS with the CA works.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
        runner = Runner(home / "agent", 1)
        tokens = LocalTokenSource(LocalIssuer(LocalKeyPaths.under(home), config.vault.audience), "tls", ("default",))
        link = Link(DialOptions(f"localhost:{port}", tls_ca_file=str(cert)), tokens, runner,
                    AgentIdentityInfo("tls", ("default",), {}, "t", "h"))
        thread = threading.Thread(target=link.run, daemon=True)
        thread.start()
        assert link.connected.wait(10)
        executor = AgentsExecutor(SqliteStore(home / "db", session_ttl_min=0.1))
        key_ = TryKey("d", "r", "t", -1, 1)
        executor.submit(TryRequest(key_, ("true",)))
        seen: list = []
        wait_until(lambda: bool(seen.extend(executor.events(0.2)) or any(e.terminal for e in seen)), 10,
                   "the try over TLS")
        assert [e.outcome for e in seen if e.terminal] == [TryOutcome.SUCCESS]
        link.stop()
        thread.join(5)
    finally:
        server.stop(grace=0.5)


def test_cli_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LEOFLOW_HOME": str(tmp_path / "h"), "LEOFLOW_SERVER__GRPC_METRICS_BIND": ""}
    proc = subprocess.Popen([sys.executable, "-m", "leoflow.cli.main", "agentrpc", "--bind", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def serving() -> bool:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return resp.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        wait_until(serving, 20, "agentrpc to serve")
        assert (tmp_path / "h" / "agent-auth" / "jwks.json").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def test_cli_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "LEOFLOW_HOME": str(tmp_path / "h"), "LEOFLOW_SERVER__GRPC_METRICS_BIND": ""}
        done = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "agentrpc", "--bind", f"127.0.0.1:{port}"],
                              env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:8793", True), ("localhost:8793", True), ("[::1]:8793", True), ("127.0.0.2:1", True),
    ("0.0.0.0:8793", False), ("10.0.0.5:8793", False), ("agents.example:8793", False),
])
def test_loopback_rule(address: str, loopback: bool) -> None:
    from leoflow.agentrpc.addresses import is_loopback

    assert is_loopback(address) is loopback
