"""`leoflow vault bootstrap` against a real OpenBao: what it creates, and that a second run changes nothing."""

from __future__ import annotations

from leoflow.secrets import bootstrap
from tests.vault.conftest import OpenBao


def test_bootstrap_is_idempotent(openbao: OpenBao) -> None:
    report = bootstrap.bootstrap(openbao.root(), openbao.settings)
    assert not report.changed, [str(c) for c in report.changes if c.action != "unchanged"]
    kinds = {c.kind for c in report.changes}
    assert {"kv-mount", "auth-mount", "policy", "oidc-key", "oidc-role", "approle-role", "session-key",
            "pki-mount", "pki-ca", "pki-role"} <= kinds


def test_bootstrap_sets_the_oidc_role_for_the_audience(openbao: OpenBao) -> None:
    root = openbao.root()
    role = root.secrets.identity.read_role(openbao.settings.identity_role)["data"]
    assert role["client_id"] == openbao.settings.audience
    assert role["key"] == openbao.settings.oidc_key
    assert "identity.entity.metadata.pools" in role["template"]
    key = root.secrets.identity.read_named_key(openbao.settings.oidc_key)["data"]
    assert openbao.settings.audience in key["allowed_client_ids"]
    rules = root.sys.read_policy(openbao.settings.agent_policy)["data"]["rules"]
    assert f'identity/oidc/token/{openbao.settings.identity_role}' in rules


def test_add_agent_twice_changes_nothing_the_second_time(openbao: OpenBao) -> None:
    root = openbao.root()
    first = bootstrap.Report()
    role_id = bootstrap.add_agent(root, openbao.settings, "boot-a", ["default", "gpu"], first)
    assert {c.action for c in first.changes} >= {"created"}
    second = bootstrap.Report()
    assert bootstrap.add_agent(root, openbao.settings, "boot-a", ["default", "gpu"], second) == role_id
    assert not second.changed
    third = bootstrap.Report()
    bootstrap.add_agent(root, openbao.settings, "boot-a", ["default"], third)
    assert [str(c) for c in third.changes if c.action != "unchanged"] == ["updated   entity leoflow-agent-boot-a"]
