"""The UI session signing key comes from Vault, so a session issued by one replica is accepted by another."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leoflow.api.auth.tokens import TokenService
from leoflow.secrets.session_key import load_session_key
from leoflow.secrets.vault import VaultError
from tests.vault.conftest import OpenBao
from tests.vault.rig import provision, server_login


def _now() -> datetime:
    return datetime.now(UTC)


def test_every_replica_reads_the_same_key_and_accepts_the_others_sessions(openbao: OpenBao, tmp_path: Path) -> None:
    replicas = []
    for name in ("replica-a", "replica-b"):
        login = server_login(openbao, tmp_path / name)
        cfg = openbao.config(tmp_path / name, role_id_file=login.role_id_file, secret_id_file=login.secret_id_file)
        key = load_session_key(cfg)
        assert key is not None and len(key) >= 32
        replicas.append(TokenService(key, expiry_seconds=600, clock=_now))
    token = replicas[0].issue("alice", "admin")
    assert replicas[1].verify(token).username == "alice"


def test_no_path_means_no_vault_key(openbao: OpenBao, tmp_path: Path) -> None:
    assert load_session_key(openbao.config(tmp_path, session_key_path="")) is None


def test_clear_errors_without_login_or_policy_or_key(openbao: OpenBao, tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="needs Vault login settings"):
        load_session_key(openbao.config(tmp_path))
    agent = provision(openbao, "sk-a", ["default"], tmp_path)  # an agent's policy may not read it
    cfg = openbao.config(tmp_path, role_id_file=agent.role_id_file, secret_id_file=agent.secret_id_file)
    with pytest.raises(VaultError, match="Vault refused the request"):
        load_session_key(cfg)
    # A path the server's policy does not cover is refused; one that does not exist says how to create it.
    login = server_login(openbao, tmp_path / "srv")
    other = openbao.config(tmp_path, role_id_file=login.role_id_file, secret_id_file=login.secret_id_file,
                           session_key_path="leoflow/server/absent")
    with pytest.raises(VaultError, match="Vault refused the request"):
        load_session_key(other)
    admin = tmp_path / "admin-token"
    admin.write_text(openbao.root_token)
    missing = openbao.config(tmp_path, token_file=str(admin), session_key_path="leoflow/server/absent")
    with pytest.raises(VaultError, match="does not exist: run `leoflow vault bootstrap`"):
        load_session_key(missing)
