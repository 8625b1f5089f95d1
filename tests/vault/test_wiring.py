"""The processes pick Vault up from configuration alone: agentrpc's verifier, the agent's token source,
and a real `leoflow-agent` process logging in with AppRole files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leoflow.agent.auth import token_source
from leoflow.agent.vault_auth import VaultTokenSource
from leoflow.agentrpc.server import ServerSetupError, build_verifier
from leoflow.executors.port import TryOutcome
from tests.vault.conftest import OpenBao
from tests.vault.rig import VaultRig, provision, wait_until


def test_agentrpc_verifies_against_vault_when_vault_addr_is_set(openbao: OpenBao, tmp_path: Path) -> None:
    login = provision(openbao, "wire-a", ["default"], tmp_path)
    cfg = openbao.config(tmp_path, role_id_file=login.role_id_file, secret_id_file=login.secret_id_file)
    source = token_source(cfg, "wire-a", ("default",))
    assert isinstance(source, VaultTokenSource)
    identity = build_verifier(cfg).verify(source.token())
    assert identity.agent_id == "wire-a" and identity.pools == frozenset({"default"})
    broken = openbao.config(tmp_path, addr="http://127.0.0.1:9")
    with pytest.raises(ServerSetupError, match=r"config key vault\.addr"):
        build_verifier(broken)


def test_a_real_agent_process_logs_in_with_approle_and_runs_a_task(openbao: OpenBao, vrig: VaultRig,
                                                                  tmp_path: Path) -> None:
    login = provision(openbao, "proc-a", ["default"], tmp_path)
    env = {**os.environ, "LEOFLOW_HOME": str(vrig.home), "LEOFLOW_VAULT__ADDR": openbao.addr,
           "LEOFLOW_VAULT__ROLE_ID_FILE": login.role_id_file, "LEOFLOW_VAULT__SECRET_ID_FILE": login.secret_id_file,
           "LEOFLOW_VAULT__IDENTITY_ROLE": openbao.settings.identity_role}
    argv = [sys.executable, "-m", "leoflow.agent.main", "--server", f"127.0.0.1:{vrig.server.port}", "--id", "proc-a",
            "--pools", "default", "--work-dir", str(tmp_path / "agent"), "--metrics-bind", "", "--drain-timeout", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "proc-a" in vrig.server.service.connected_agents(), timeout=20, what="the agent process")
        assert vrig.wait_terminal(vrig.submit("via-proc", ["sh", "-c", "echo hi"])).outcome is TryOutcome.SUCCESS
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=15)
    assert Path(login.secret_id_file).read_text().strip().encode() not in err
    # On a clean exit the agent revokes its Vault token: no live token of its role is left behind.
    root = openbao.root()
    roles = []
    for accessor in root.list("auth/token/accessors")["data"]["keys"]:
        meta = root.auth.token.lookup_accessor(accessor)["data"].get("meta") or {}
        roles.append(meta.get("role_name"))
    assert "leoflow-agent-proc-a" not in roles


def test_an_agent_with_a_revoked_secret_id_exits_with_a_clear_message(openbao: OpenBao, tmp_path: Path) -> None:
    from leoflow.secrets import bootstrap

    login = provision(openbao, "proc-r", ["default"], tmp_path)
    bootstrap.revoke_secret_ids(openbao.root(), openbao.settings, bootstrap.agent_role_name("proc-r"))
    env = {**os.environ, "LEOFLOW_HOME": str(tmp_path / "home"), "LEOFLOW_VAULT__ADDR": openbao.addr,
           "LEOFLOW_VAULT__ROLE_ID_FILE": login.role_id_file, "LEOFLOW_VAULT__SECRET_ID_FILE": login.secret_id_file}
    done = subprocess.run([sys.executable, "-m", "leoflow.agent.main", "--server", "127.0.0.1:9", "--id", "proc-r",
                           "--metrics-bind", ""], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "AppRole login refused" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


def test_vault_addr_without_agent_login_refuses_the_local_fallback(openbao: OpenBao, tmp_path: Path) -> None:
    from leoflow.agent.auth import TokenError

    with pytest.raises(TokenError, match=r"vault\.addr is set but the agent has no Vault login"):
        token_source(openbao.config(tmp_path), "x", ("default",))
