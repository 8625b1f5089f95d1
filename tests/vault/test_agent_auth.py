"""Agents authenticate with Vault-issued identity tokens; agentrpc verifies them against Vault's JWKS.

Everything here is real: OpenBao in dev mode configured by `leoflow vault bootstrap`'s code, AppRole
logins over HTTP, agentrpc on a loopback port, agents running real processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from leoflow.agent.auth import TokenError
from leoflow.agentrpc.auth import AuthError
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.agentrpc.vault_jwks import VaultDiscoveryError, discover, vault_verifier
from leoflow.executors.port import TryOutcome
from leoflow.secrets import bootstrap
from leoflow.secrets.login import LoginSettings, VaultSession
from leoflow.secrets.vault import VaultDenied
from tests.vault.conftest import OpenBao
from tests.vault.rig import VaultRig, provision, token_source, wait_until


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def _register(port: int, token: str, agent_id: str = "x", pools: tuple[str, ...] = ("default",)) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        pb_grpc.AgentServiceStub(channel).Register(
            pb.RegisterRequest(agent_id=agent_id, pools=list(pools), capacity=1, version="t", hostname="h"),
            metadata=(("authorization", f"Bearer {token}"),), timeout=5)


def _refused(port: int, token: str, **kw: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _register(port, token, **kw)  # type: ignore[arg-type]
    return info.value


def _short_role(openbao: OpenBao, name: str, ttl: str, agent_id: str, tmp_path: Path) -> LoginSettings:
    """An OIDC role with a short token life, and an agent whose AppRole may use it."""
    root = openbao.root()
    s = openbao.settings
    root.secrets.identity.create_or_update_role(name, key=s.oidc_key, template=bootstrap.IDENTITY_TEMPLATE,
                                                client_id=s.audience, ttl=ttl)
    root.sys.create_or_update_policy(name, f'path "identity/oidc/token/{name}" {{ capabilities = ["read"] }}')
    login = provision(openbao, agent_id, ["default"], tmp_path)
    root.auth.approle.create_or_update_approle(bootstrap.agent_role_name(agent_id),
                                               token_policies=[s.agent_policy, name], token_ttl="1h",
                                               token_max_ttl="24h")
    return login


def test_agent_logs_in_gets_a_token_connects_and_runs_tasks(openbao: OpenBao, vrig: VaultRig, tmp_path: Path) -> None:
    login = provision(openbao, "run-a", ["default", "etl"], tmp_path)
    tokens = token_source(openbao, login)
    claims = _claims(tokens.token())
    assert claims["aud"] == openbao.settings.audience
    assert claims["agent_id"] == "run-a" and claims["pools"] == "default,etl"
    assert claims["iss"] == discover(openbao.addr).issuer
    vrig.agent("run-a", tokens, pools=("default", "etl"))
    keys = [vrig.submit(f"t{i}", ["sh", "-c", f"echo task {i}"], queue="etl" if i % 2 else "default")
            for i in range(4)]
    for key in keys:
        assert vrig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    assert vrig.server.service.connected_agents() == ["run-a"]


def test_identity_token_rotates_mid_stream_without_losing_a_task(openbao: OpenBao, vrig: VaultRig,
                                                                  tmp_path: Path) -> None:
    # A dedicated OIDC role with a 3 s token life, so several refreshes happen during one task.
    login = _short_role(openbao, "leoflow-agent-short", "3s", "rot-a", tmp_path)
    tokens = token_source(openbao, login, role="leoflow-agent-short")
    first = tokens.token()
    agent = vrig.agent("rot-a", tokens)
    stop = threading.Event()
    keeper = threading.Thread(target=tokens.keep_fresh, args=(stop,), daemon=True)
    keeper.start()
    try:
        key = vrig.submit("long", ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.5; done"])
        # The token the stream was opened with is expired before the task ends ...
        wait_until(lambda: tokens.fetches >= 3, timeout=15, what="two identity token refreshes")
        assert tokens.token() != first
        # ... and a reconnect mid-task dials with the fresh one; the task is neither lost nor doubled.
        agent.link.drop()
        event = vrig.wait_terminal(key, timeout=20)
    finally:
        stop.set()
        keeper.join(timeout=5)
    assert event.outcome is TryOutcome.SUCCESS
    vrig.seen.extend(vrig.executor.events(0.3))
    assert len(vrig.terminal_events(key)) == 1
    assert agent.link.sessions >= 2
    lines = [line["event"] for line in vrig.logs.read(key).lines]
    assert [f"tick {i}" for i in range(1, 9)] == [t for t in lines if t.startswith("tick")]


def test_revoked_secret_id_is_refused_with_a_clear_message(openbao: OpenBao, tmp_path: Path) -> None:
    login = provision(openbao, "rev-a", ["default"], tmp_path)
    root = openbao.root()
    assert bootstrap.revoke_secret_ids(root, openbao.settings, bootstrap.agent_role_name("rev-a")) == 1
    with pytest.raises(TokenError) as info:
        token_source(openbao, login).token()
    message = str(info.value)
    assert "AppRole login refused" in message and "revoked, expired or used up" in message
    assert login.secret_id_file in message
    assert Path(login.secret_id_file).read_text() not in message


def test_wrapped_secret_id_is_unwrapped_once(openbao: OpenBao, tmp_path: Path) -> None:
    login = provision(openbao, "wrap-a", ["default"], tmp_path, wrap_ttl="60s")
    session = VaultSession(login)
    assert session.client().auth.token.lookup_self()["data"]["entity_id"]
    # The wrapping token in the file is spent: a second process holding the same file cannot log in.
    with pytest.raises(VaultDenied, match="already used or has expired"):
        VaultSession(login).client()
    # The first session keeps the unwrapped secret id in memory and can log in again.
    session.relogin()
    assert session.logins == 2


def test_token_is_renewed_then_logged_in_again_at_max_ttl(openbao: OpenBao, tmp_path: Path) -> None:
    login = provision(openbao, "ttl-a", ["default"], tmp_path)
    openbao.root().auth.approle.create_or_update_approle(
        bootstrap.agent_role_name("ttl-a"), token_policies=[openbao.settings.agent_policy], token_ttl="3s",
        token_max_ttl="5s")
    session = VaultSession(login)
    first = session.client().auth.token.lookup_self()["data"]["accessor"]
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and session.logins < 2:
        assert session.client().auth.token.lookup_self()["data"]["entity_id"]
        time.sleep(0.3)
    assert session.renewals >= 1
    assert session.logins >= 2
    assert session.client().auth.token.lookup_self()["data"]["accessor"] != first


def test_a_revoked_vault_token_is_replaced_by_a_new_login(openbao: OpenBao, tmp_path: Path) -> None:
    login = provision(openbao, "relog-a", ["default"], tmp_path)
    tokens = token_source(openbao, login)
    tokens.token()
    accessor = tokens.session.client().auth.token.lookup_self()["data"]["accessor"]
    openbao.root().auth.token.revoke_accessor(accessor)
    tokens._refresh_at = 0.0  # force the next call to ask Vault: the revoked token is refused, we log in again
    assert _claims(tokens.token())["agent_id"] == "relog-a"
    assert tokens.session.logins == 2


def test_vault_token_file_is_followed(openbao: OpenBao, tmp_path: Path) -> None:
    """A token kept fresh by Vault Agent in a file: re-read when it changes; ~/.vault-token is ignored."""
    login = provision(openbao, "file-a", ["default"], tmp_path)
    token_a = VaultSession(login).client().token
    sink = tmp_path / "vault-agent-sink"
    sink.write_text(token_a)
    (Path.home() / ".vault-token").write_text("root-looking-decoy")
    session = VaultSession(LoginSettings(addr=openbao.addr, token_file=str(sink)))
    assert session.client().token == token_a
    token_b = VaultSession(login).client().token
    sink.write_text(token_b + "\n")
    assert session.client().token == token_b


def test_hvac_never_reads_the_home_token(openbao: OpenBao) -> None:
    (Path.home() / ".vault-token").write_text(openbao.root_token)
    from leoflow.secrets.vault import make_client

    client = make_client(openbao.addr)
    assert client.token == ""
    assert not client.is_authenticated()


def test_pool_not_allowed_is_permission_denied(openbao: OpenBao, vrig: VaultRig, tmp_path: Path) -> None:
    tokens = token_source(openbao, provision(openbao, "pool-a", ["default"], tmp_path))
    err = _refused(vrig.server.port, tokens.token(), agent_id="pool-a", pools=("default", "gpu"))
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "gpu" in (err.details() or "")
    err = _refused(vrig.server.port, tokens.token(), agent_id="someone-else")
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED


def test_an_agent_without_pools_in_vault_may_serve_nothing(openbao: OpenBao, vrig: VaultRig, tmp_path: Path) -> None:
    root = openbao.root()
    s = openbao.settings
    root.auth.approle.create_or_update_approle("bare", token_policies=[s.agent_policy])
    role_id = bootstrap.role_id(root, s, "bare")
    secret = bootstrap.new_secret_id(root, s, "bare")
    (tmp_path / "r").write_text(role_id)
    (tmp_path / "s").write_text(secret)
    tokens = token_source(openbao, LoginSettings(addr=openbao.addr, role_id_file=str(tmp_path / "r"),
                                                 secret_id_file=str(tmp_path / "s")))
    err = _refused(vrig.server.port, tokens.token(), agent_id="bare")
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_bad_tokens_are_unauthenticated_and_never_logged(openbao: OpenBao, vrig: VaultRig, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    good = token_source(openbao, provision(openbao, "bad-a", ["default"], tmp_path)).token()
    header = jwt.get_unverified_header(good)
    claims = _claims(good)
    jwks = json.loads(__import__("requests").get(discover(openbao.addr).jwks_uri, timeout=5).text)
    public = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    forged_key = ec.generate_private_key(ec.SECP256R1())
    hs_secret = json.dumps(public).encode()
    hs_head = _b64(json.dumps({"alg": "HS256", "kid": header["kid"]}).encode())
    hs_body = f"{hs_head}.{_b64(json.dumps(claims).encode())}"
    cases = {
        "wrongly signed": jwt.encode(claims, forged_key, algorithm="ES256", headers={"kid": header["kid"]}),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, forged_key, algorithm="ES256",
                                     headers={"kid": header["kid"]}),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'kid': header['kid']}).encode())}."
                    f"{_b64(json.dumps(claims).encode())}.",
        "HS/RS confusion": hs_body + "." + _b64(hmac.new(hs_secret, hs_body.encode(), hashlib.sha256).digest()),
        "unknown kid": jwt.encode(claims, forged_key, algorithm="ES256", headers={"kid": "not-a-vault-kid"}),
        "garbage": "not.a.jwt",
    }
    caplog.set_level(logging.WARNING)
    for name, token in cases.items():
        err = _refused(vrig.server.port, token, agent_id="bad-a")
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED, name
    # The wrong audience, checked with Vault's real signature: a role for another client id.
    root = openbao.root()
    root.secrets.identity.create_named_key("other-key", allowed_client_ids=["someone-else"], algorithm="ES256")
    root.secrets.identity.create_or_update_role("other-aud", key="other-key", client_id="someone-else", ttl="5m")
    root.sys.create_or_update_policy("other-aud", 'path "identity/oidc/token/other-aud" { capabilities = ["read"] }')
    login = provision(openbao, "bad-a", ["default"], tmp_path / "again")
    root.auth.approle.create_or_update_approle(bootstrap.agent_role_name("bad-a"),
                                               token_policies=[openbao.settings.agent_policy, "other-aud"])
    other = token_source(openbao, login, role="other-aud").token()
    err = _refused(vrig.server.port, other, agent_id="bad-a")
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "audience" in (err.details() or "")
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "agent call refused" in logged
    for token in [*cases.values(), other]:
        assert token not in logged
    _register(vrig.server.port, good, agent_id="bad-a")  # the genuine token still works


def test_expired_token_is_refused_with_a_clear_message(openbao: OpenBao, tmp_path: Path) -> None:
    login = _short_role(openbao, "leoflow-agent-1s", "1s", "exp-a", tmp_path)
    token = token_source(openbao, login, role="leoflow-agent-1s").token()
    verifier = vault_verifier(openbao.config(tmp_path).vault, leeway=0.5)
    assert verifier is not None
    assert verifier.verify(token).agent_id == "exp-a"
    time.sleep(1.7)
    # Also once verified and cached: the cache keeps an identity only until exp + leeway.
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(token)


def test_expired_token_over_grpc(openbao: OpenBao, vrig: VaultRig, tmp_path: Path) -> None:
    """An agent presenting a JWT that has run out gets UNAUTHENTICATED "token expired" (a server with a
    small leeway, so the test need not wait out the default 30 s)."""
    from leoflow.agentrpc.server import AgentRpcServer
    from leoflow.store.sqlite import SqliteStore

    login = _short_role(openbao, "leoflow-agent-1s", "1s", "exp-b", tmp_path)
    token = token_source(openbao, login, role="leoflow-agent-1s").token()
    verifier = vault_verifier(openbao.config(tmp_path).vault, leeway=0.2)
    assert verifier is not None
    store = SqliteStore(tmp_path / "exp.db", session_ttl_min=1.0)
    server = AgentRpcServer(vrig.config, store, bind="127.0.0.1:0", verifier=verifier)
    server.start()
    try:
        time.sleep(1.5)
        err = _refused(server.port, token, agent_id="exp-b")
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
        assert err.details() == "token expired"
        # The agent's own source notices too and fetches a new one, which is accepted.
        _register(server.port, token_source(openbao, login, role="leoflow-agent-1s").token(), agent_id="exp-b")
    finally:
        server.stop(grace=0.2)
        store.close()


def test_signing_key_rotation_is_followed_without_a_restart(openbao: OpenBao, vrig: VaultRig,
                                                            tmp_path: Path) -> None:
    login = provision(openbao, "kid-a", ["default"], tmp_path)
    before = token_source(openbao, login).token()
    _register(vrig.server.port, before, agent_id="kid-a")  # the server has now cached the JWKS
    root = openbao.root()
    kids = {jwt.get_unverified_header(before)["kid"]}
    for _ in range(2):  # twice: the new signing key is one the cached set (current + next) never held
        bootstrap.rotate_signing_key(root, openbao.settings)
        after = token_source(openbao, login).token()
        kids.add(jwt.get_unverified_header(after)["kid"])
        _register(vrig.server.port, after, agent_id="kid-a")
    assert len(kids) == 3
    _register(vrig.server.port, before, agent_id="kid-a")  # old keys stay valid for verification_ttl


def test_discovery_failure_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(VaultDiscoveryError, match=r"config key vault\.addr"):
        discover("http://127.0.0.1:9", timeout=0.5)


def test_no_login_settings_means_no_vault_source(tmp_path: Path) -> None:
    from leoflow.agent.vault_auth import vault_token_source
    from leoflow.config import Config

    assert vault_token_source(Config(home=str(tmp_path))) is None
    cfg = Config(home=str(tmp_path))
    cfg.vault.addr = "http://127.0.0.1:9"
    cfg.vault.role_id_file = str(tmp_path / "role")
    with pytest.raises(TokenError, match=r"vault\.secret_id_file is required"):
        vault_token_source(cfg)
