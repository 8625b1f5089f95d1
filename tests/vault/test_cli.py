"""`leoflow vault ...` commands against the real OpenBao: files, messages, no secrets on stdout."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from leoflow.cli import vault as vault_cli
from leoflow.cli.errors import CliError
from leoflow.secrets.login import LoginSettings, VaultSession
from tests.vault.conftest import OpenBao


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="leoflow")
    vault_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _token_file(openbao: OpenBao, tmp_path: Path) -> str:
    path = tmp_path / "operator-token"
    path.write_text(openbao.root_token)
    return str(path)


def _base(openbao: OpenBao, tmp_path: Path) -> list[str]:
    """The same names the session's bootstrap used, as an operator's config file would hold them."""
    config = tmp_path / "leoflow.toml"
    config.write_text(f'[vault]\naddr = "{openbao.addr}"\nsession_key_path = "{openbao.settings.session_key_path}"\n'
                      f'pki_role = "{openbao.settings.pki_agent_role}"\n')
    return ["vault", "--config", str(config), "--token-file", _token_file(openbao, tmp_path)]


def test_bootstrap_twice_reports_nothing_changed(openbao: OpenBao, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = _base(openbao, tmp_path)
    assert _run([*base, "bootstrap"]) == 0
    assert _run([*base, "bootstrap"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("vault is ready for Leoflow (nothing changed)")
    assert openbao.root_token not in out


def test_agent_add_writes_private_files_and_the_agent_can_log_in(openbao: OpenBao, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = _base(openbao, tmp_path)
    role_file, secret_file = tmp_path / "creds" / "role-id", tmp_path / "creds" / "secret-id"
    assert _run([*base, "agent-add", "cli-a", "--pools", "default,etl", "--role-id-file", str(role_file),
                 "--secret-id-file", str(secret_file), "--wrap-ttl", "5m"]) == 0
    out = capsys.readouterr().out
    assert secret_file.read_text().strip() not in out
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    session = VaultSession(LoginSettings(addr=openbao.addr, role_id_file=str(role_file),
                                         secret_id_file=str(secret_file), secret_id_wrapped=True))
    assert session.client().auth.token.lookup_self()["data"]["meta"]["role_name"] == "leoflow-agent-cli-a"
    assert _run([*base, "revoke", "cli-a"]) == 0
    assert "destroyed 1 secret id(s)" in capsys.readouterr().out


def test_missing_operator_token_is_a_clean_error(openbao: OpenBao, tmp_path: Path) -> None:
    (Path.home() / ".vault-token").write_text(openbao.root_token)
    with pytest.raises(CliError, match=r"~/\.vault-token is not read"):
        _run(["vault", "--addr", openbao.addr, "bootstrap"])
    with pytest.raises(CliError, match="no Vault address"):
        _run(["vault", "bootstrap"])


def test_a_denied_token_is_a_clean_error(openbao: OpenBao, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("s.not-a-real-token")
    with pytest.raises(CliError, match="Vault refused the request"):
        _run(["vault", "--addr", openbao.addr, "--token-file", str(bad), "bootstrap"])


def test_the_real_cli_process_reads_vault_token_from_the_environment(openbao: OpenBao, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = _base(openbao, tmp_path)[2]
    env = {**os.environ, "VAULT_TOKEN": openbao.root_token}
    done = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "vault", "--config", config, "bootstrap"],
                          env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert b"vault is ready for Leoflow" in done.stdout
    assert openbao.root_token.encode() not in done.stdout + done.stderr
