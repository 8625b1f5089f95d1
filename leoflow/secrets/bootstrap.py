"""Configure a Vault (or OpenBao) for Leoflow: idempotent, so it is safe to run on every deploy.

What it sets up (adr/0090):
- the KV v2 mount holding connections, variables and the UI session key (Airflow's layout);
- the AppRole auth mount agents and servers log in with;
- the OIDC signing key and role that issue agent identity tokens (``client_id`` = the audience the
  agentrpc server checks; a template copying the agent id and pools from the agent's entity);
- the policies ``leoflow-agent`` (identity token, PKI certificate), ``leoflow-server`` (read
  connections/variables/session key) and ``leoflow-task`` (what a Nomad task reads through
  workload identity);
- an AppRole role for servers; per agent (``add_agent``): an AppRole role, an entity carrying the
  agent id and pools as metadata, and an alias tying the role's logins to that entity;
- optionally a PKI mount with a root CA and roles for agent (client) and server certificates.

Each step reads first and writes only what differs; the report lists what changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hvac
from hvac import exceptions as hvac_exc

from leoflow.config import VaultConfig
from leoflow.secrets.vault import VaultError, data, explain

AGENT_ROLE_PREFIX = "leoflow-agent-"
SERVER_ROLE = "leoflow-server"
# Claims the agentrpc verifier reads (leoflow/agentrpc/auth.py): agent_id binds the token to one
# agent, pools lists the queues it may serve (comma string; entity metadata values are strings).
IDENTITY_TEMPLATE = ('{"agent_id": {{identity.entity.metadata.agent_id}}, '
                     '"pools": {{identity.entity.metadata.pools}}}')


@dataclass(frozen=True)
class BootstrapSettings:
    kv_mount: str = "secret"
    connections_path: str = "leoflow/connections"
    variables_path: str = "leoflow/variables"
    session_key_path: str = ""
    approle_mount: str = "approle"
    agent_policy: str = "leoflow-agent"
    server_policy: str = "leoflow-server"
    scheduler_policy: str = "leoflow-scheduler"
    task_policy: str = "leoflow-task"
    oidc_key: str = "leoflow"
    identity_role: str = "leoflow-agent"
    audience: str = "leoflow-agents"
    identity_ttl: str = "15m"
    key_algorithm: str = "ES256"
    rotation_period: str = "24h"
    verification_ttl: str = "24h"
    issuer: str = ""  # identity/oidc/config issuer; empty keeps Vault's own address
    agent_token_ttl: str = "1h"  # noqa: S105 - a duration, not a secret
    agent_token_max_ttl: str = "24h"  # noqa: S105
    pki: bool = False
    pki_mount: str = "pki"
    pki_agent_role: str = "leoflow-agent"
    pki_server_role: str = "leoflow-server"
    pki_max_ttl: str = "720h"
    pki_ca_common_name: str = "Leoflow agents CA"
    # Nomad workload identity (what `nomad setup vault` does): a JWT auth mount trusting Nomad's JWKS
    # and a role giving tasks the leoflow-task policy. Empty: left to the operator.
    nomad_jwks_url: str = ""
    nomad_jwt_mount: str = "jwt-nomad"
    nomad_role: str = "leoflow-task"
    nomad_audience: str = "vault.io"

    @classmethod
    def from_config(cls, vault: VaultConfig, **overrides: Any) -> BootstrapSettings:
        base = cls(kv_mount=vault.kv_mount, connections_path=vault.connections_path.strip("/"),
                   variables_path=vault.variables_path.strip("/"), session_key_path=vault.session_key_path.strip("/"),
                   approle_mount=vault.approle_mount, oidc_key=vault.oidc_key, identity_role=vault.identity_role,
                   audience=vault.audience, identity_ttl=vault.identity_ttl, issuer=_issuer_base(vault.issuer),
                   pki=bool(vault.pki_role), pki_mount=vault.pki_mount,
                   pki_agent_role=vault.pki_role or "leoflow-agent")
        return _replace(base, **overrides)


def _replace(s: BootstrapSettings, **overrides: Any) -> BootstrapSettings:
    from dataclasses import replace

    return replace(s, **{k: v for k, v in overrides.items() if v is not None})


def _issuer_base(issuer: str) -> str:
    """Config holds the token ``iss`` (``<base>/v1/identity/oidc``); Vault's setting is the base."""
    return issuer.removesuffix("/v1/identity/oidc").rstrip("/")


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # created | updated | unchanged

    def __str__(self) -> str:
        return f"{self.action:9} {self.kind} {self.name}"


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)

    def add(self, kind: str, name: str, action: str) -> None:
        self.changes.append(Change(kind, name, action))

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except VaultError:
        raise
    except Exception as exc:
        raise explain(exc, what) from exc


def _read_or_none(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except hvac_exc.InvalidPath:
        return None
    except hvac_exc.InvalidRequest as exc:
        # Some reads answer 400 "role not found" / "no entity" rather than 404.
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise explain(exc, what) from exc
    except Exception as exc:
        raise explain(exc, what) from exc


# -- policies ---------------------------------------------------------------------------------
def agent_policy(s: BootstrapSettings) -> str:
    lines = [
        "# Leoflow agent: its identity token, and (optionally) its mTLS client certificate.",
        f'path "identity/oidc/token/{s.identity_role}" {{\n  capabilities = ["read"]\n}}',
    ]
    if s.pki:
        lines.append(f'path "{s.pki_mount}/issue/{s.pki_agent_role}" {{\n  capabilities = ["update"]\n}}')
    return "\n".join(lines) + "\n"


def _kv_read_rules(s: BootstrapSettings, list_too: bool) -> list[str]:
    rules = []
    for sub in (s.connections_path, s.variables_path):
        rules.append(f'path "{s.kv_mount}/data/{sub}/*" {{\n  capabilities = ["read"]\n}}')
        if list_too:
            rules.append(f'path "{s.kv_mount}/metadata/{sub}/*" {{\n  capabilities = ["read", "list"]\n}}')
            rules.append(f'path "{s.kv_mount}/metadata/{sub}" {{\n  capabilities = ["list"]\n}}')
    return rules


def server_policy(s: BootstrapSettings) -> str:
    lines = ["# Leoflow server: read connections, variables and the session key; never write them."]
    lines += _kv_read_rules(s, list_too=True)
    lines += _deployment_reads(s, "consul", "server")  # what nomad/leoflow-server.nomad.hcl renders
    if s.session_key_path:
        lines.append(f'path "{s.kv_mount}/data/{s.session_key_path}" {{\n  capabilities = ["read"]\n}}')
    if s.pki:
        lines.append(f'path "{s.pki_mount}/issue/{s.pki_server_role}" {{\n  capabilities = ["update"]\n}}')
    return "\n".join(lines) + "\n"


def _deployment_reads(s: BootstrapSettings, *names: str) -> list[str]:
    """What the jobspecs in nomad/ render into their config: ``<kv_mount>/leoflow/<name>``."""
    return [f'path "{s.kv_mount}/data/leoflow/{name}" {{\n  capabilities = ["read"]\n}}' for name in names]


def scheduler_policy(s: BootstrapSettings) -> str:
    lines = ["# Leoflow scheduler on Nomad: its Consul and Nomad tokens, and the connections and variables"
             " it checks before dispatch and masks in task logs."]
    lines += _kv_read_rules(s, list_too=False)
    lines += _deployment_reads(s, "consul", "nomad")
    return "\n".join(lines) + "\n"


def task_policy(s: BootstrapSettings) -> str:
    lines = ["# A Leoflow task on Nomad (workload identity): read the connections and variables it renders."]
    lines += _kv_read_rules(s, list_too=False)
    return "\n".join(lines) + "\n"


# -- steps ------------------------------------------------------------------------------------
def _ensure_kv(client: hvac.Client, s: BootstrapSettings, report: Report) -> None:
    mounts = data(_call("list secrets engines", client.sys.list_mounted_secrets_engines), "list secrets engines")
    mount = mounts.get(f"{s.kv_mount}/")
    if mount is None:
        _call(f"enable KV v2 at {s.kv_mount}/", lambda: client.sys.enable_secrets_engine(
            "kv", path=s.kv_mount, options={"version": "2"}, description="Leoflow connections and variables"))
        report.add("kv-mount", s.kv_mount, "created")
        return
    version = str((mount.get("options") or {}).get("version", "1"))
    if mount.get("type") != "kv" or version != "2":
        raise VaultError(f"mount {s.kv_mount}/ is {mount.get('type')} version {version}; Leoflow needs KV version 2 "
                         f"(set config key vault.kv_mount to a KV v2 mount, or upgrade it: "
                         f"bao kv enable-versioning {s.kv_mount}/)")
    report.add("kv-mount", s.kv_mount, "unchanged")


def _ensure_auth_mount(client: hvac.Client, path: str, kind: str, label: str, description: str, report: Report,
                       hint: str = "") -> dict[str, Any]:
    """An auth method of ``kind`` at ``path/`` (enabled when absent); another kind there is an error."""
    methods = data(_call("list auth methods", client.sys.list_auth_methods), "list auth methods")
    mount = methods.get(f"{path}/")
    if mount is None:
        _call(f"enable {label} at {path}/", lambda: client.sys.enable_auth_method(
            kind, path=path, description=description))
        report.add("auth-mount", path, "created")
        methods = data(_call("list auth methods", client.sys.list_auth_methods), "list auth methods")
        return dict(methods[f"{path}/"])
    if mount.get("type") != kind:
        raise VaultError(f"auth mount {path}/ is {mount.get('type')}, not {kind}{hint}")
    report.add("auth-mount", path, "unchanged")
    return dict(mount)


def _ensure_approle(client: hvac.Client, s: BootstrapSettings, report: Report) -> str:
    mount = _ensure_auth_mount(client, s.approle_mount, "approle", "AppRole", "Leoflow agents and servers", report,
                               hint=" (set config key vault.approle_mount)")
    return str(mount["accessor"])


def _ensure_policy(client: hvac.Client, name: str, text: str, report: Report) -> None:
    current = _read_or_none(f"read policy {name}", lambda: client.sys.read_policy(name))
    rules = None
    if isinstance(current, dict):
        rules = (current.get("data") or {}).get("rules", current.get("rules"))
    if rules == text:
        report.add("policy", name, "unchanged")
        return
    _call(f"write policy {name}", lambda: client.sys.create_or_update_policy(name, text))
    report.add("policy", name, "created" if rules is None else "updated")


def _ttl_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _ensure_oidc(client: hvac.Client, s: BootstrapSettings, report: Report) -> None:
    ident = client.secrets.identity
    if s.issuer:
        cfg = data(_call("read identity/oidc/config", ident.read_tokens_backend_configuration), "identity/oidc/config")
        if cfg.get("issuer") != s.issuer:
            _call("write identity/oidc/config", lambda: ident.configure_tokens_backend(issuer=s.issuer))
            report.add("oidc-config", "issuer", "updated")
        else:
            report.add("oidc-config", "issuer", "unchanged")
    key = _read_or_none(f"read identity/oidc/key/{s.oidc_key}", lambda: ident.read_named_key(s.oidc_key))
    want = {"algorithm": s.key_algorithm, "rotation_period": _ttl_seconds(s.rotation_period),
            "verification_ttl": _ttl_seconds(s.verification_ttl)}
    kd = key.get("data", {}) if isinstance(key, dict) else None
    allowed_now = (kd or {}).get("allowed_client_ids") or []
    if kd is None or any(kd.get(k) != v for k, v in want.items()) or s.audience not in allowed_now:
        allowed = sorted(set(kd.get("allowed_client_ids") or []) | {s.audience}) if kd else [s.audience]
        _call(f"write identity/oidc/key/{s.oidc_key}", lambda: ident.create_named_key(
            s.oidc_key, rotation_period=s.rotation_period, verification_ttl=s.verification_ttl,
            allowed_client_ids=allowed, algorithm=s.key_algorithm))
        report.add("oidc-key", s.oidc_key, "created" if kd is None else "updated")
    else:
        report.add("oidc-key", s.oidc_key, "unchanged")
    role = _read_or_none(f"read identity/oidc/role/{s.identity_role}", lambda: ident.read_role(s.identity_role))
    rd = role.get("data", {}) if isinstance(role, dict) else None
    want_role = {"key": s.oidc_key, "client_id": s.audience, "template": IDENTITY_TEMPLATE,
                 "ttl": _ttl_seconds(s.identity_ttl)}
    if rd is None or any(rd.get(k) != v for k, v in want_role.items()):
        _call(f"write identity/oidc/role/{s.identity_role}", lambda: ident.create_or_update_role(
            s.identity_role, key=s.oidc_key, template=IDENTITY_TEMPLATE, client_id=s.audience, ttl=s.identity_ttl))
        report.add("oidc-role", s.identity_role, "created" if rd is None else "updated")
    else:
        report.add("oidc-role", s.identity_role, "unchanged")


def _ensure_approle_role(client: hvac.Client, s: BootstrapSettings, name: str, policy: str,
                         report: Report) -> None:
    approle = client.auth.approle
    current = _read_or_none(f"read AppRole role {name}",
                            lambda: approle.read_role(name, mount_point=s.approle_mount))
    cd = current.get("data", {}) if isinstance(current, dict) else None
    want = {"token_policies": [policy], "token_ttl": _ttl_seconds(s.agent_token_ttl),
            "token_max_ttl": _ttl_seconds(s.agent_token_max_ttl), "bind_secret_id": True}
    if cd is not None and all(cd.get(k) == v for k, v in want.items()):
        report.add("approle-role", name, "unchanged")
        return
    _call(f"write AppRole role {name}", lambda: approle.create_or_update_approle(
        name, token_policies=[policy], token_ttl=s.agent_token_ttl, token_max_ttl=s.agent_token_max_ttl,
        bind_secret_id=True, mount_point=s.approle_mount))
    report.add("approle-role", name, "created" if cd is None else "updated")


def _ensure_session_key(client: hvac.Client, s: BootstrapSettings, report: Report) -> None:
    if not s.session_key_path:
        return
    kv = client.secrets.kv.v2
    found = _read_or_none(f"read {s.kv_mount}/{s.session_key_path}", lambda: kv.read_secret_version(
        s.session_key_path, mount_point=s.kv_mount, raise_on_deleted_version=True))
    if isinstance(found, dict) and (found.get("data") or {}).get("data", {}).get("key"):
        report.add("session-key", s.session_key_path, "unchanged")
        return
    try:
        # cas=0: two bootstraps racing never replace a key one of them already wrote.
        kv.create_or_update_secret(s.session_key_path, {"key": secrets.token_urlsafe(48)}, cas=0,
                                   mount_point=s.kv_mount)
    except hvac_exc.InvalidRequest as exc:
        if "check-and-set" not in str(exc):
            raise explain(exc, f"write {s.kv_mount}/{s.session_key_path}") from exc
        report.add("session-key", s.session_key_path, "unchanged")
        return
    except Exception as exc:
        raise explain(exc, f"write {s.kv_mount}/{s.session_key_path}") from exc
    report.add("session-key", s.session_key_path, "created")


def _ensure_pki(client: hvac.Client, s: BootstrapSettings, report: Report) -> None:
    if not s.pki:
        return
    mounts = data(_call("list secrets engines", client.sys.list_mounted_secrets_engines), "list secrets engines")
    if f"{s.pki_mount}/" not in mounts:
        _call(f"enable PKI at {s.pki_mount}/", lambda: client.sys.enable_secrets_engine(
            "pki", path=s.pki_mount, config={"max_lease_ttl": "87600h"}, description="Leoflow mTLS"))
        report.add("pki-mount", s.pki_mount, "created")
    else:
        report.add("pki-mount", s.pki_mount, "unchanged")
    pki = client.secrets.pki
    ca = _read_or_none("read the PKI CA", lambda: pki.read_ca_certificate(mount_point=s.pki_mount))
    if not ca:
        _call("generate the PKI root CA", lambda: pki.generate_root(
            "internal", s.pki_ca_common_name, extra_params={"ttl": "87600h", "key_type": "ec", "key_bits": 256},
            mount_point=s.pki_mount))
        report.add("pki-ca", s.pki_ca_common_name, "created")
    else:
        report.add("pki-ca", s.pki_ca_common_name, "unchanged")
    roles = {
        s.pki_agent_role: {"allow_any_name": True, "enforce_hostnames": False, "client_flag": True,
                           "server_flag": False, "key_type": "ec", "key_bits": 256, "max_ttl": s.pki_max_ttl,
                           "allow_ip_sans": False},
        s.pki_server_role: {"allow_any_name": True, "enforce_hostnames": False, "client_flag": False,
                            "server_flag": True, "key_type": "ec", "key_bits": 256, "max_ttl": s.pki_max_ttl,
                            "allow_ip_sans": True, "allow_localhost": True},
    }
    for name, params in roles.items():
        current = _read_or_none(f"read PKI role {name}", lambda n=name: pki.read_role(n, mount_point=s.pki_mount))
        cd = current.get("data", {}) if isinstance(current, dict) else None
        same = cd is not None and all(cd.get(k) == v for k, v in params.items() if k != "max_ttl")
        if same:
            report.add("pki-role", name, "unchanged")
            continue
        _call(f"write PKI role {name}", lambda n=name, p=params: pki.create_or_update_role(
            n, extra_params=p, mount_point=s.pki_mount))
        report.add("pki-role", name, "created" if cd is None else "updated")


def _ensure_nomad_jwt(client: hvac.Client, s: BootstrapSettings, report: Report) -> None:
    if not s.nomad_jwks_url:
        return
    _ensure_auth_mount(client, s.nomad_jwt_mount, "jwt", "JWT auth", "Nomad workload identity for Leoflow tasks",
                       report)
    jwt_auth = client.auth.jwt
    cfg = _read_or_none("read the Nomad JWT config", lambda: jwt_auth.read_config(path=s.nomad_jwt_mount))
    cd = (cfg or {}).get("data") or {}
    if cd.get("jwks_url") != s.nomad_jwks_url or cd.get("default_role") != s.nomad_role:
        _call("configure the Nomad JWT auth", lambda: jwt_auth.configure(
            jwks_url=s.nomad_jwks_url, jwt_supported_algs=["RS256", "EdDSA"], default_role=s.nomad_role,
            path=s.nomad_jwt_mount))
        report.add("nomad-jwt-config", s.nomad_jwt_mount, "created" if not cd else "updated")
    else:
        report.add("nomad-jwt-config", s.nomad_jwt_mount, "unchanged")
    _ensure_nomad_role(jwt_auth, s, s.nomad_role, s.task_policy, None, report)
    # Leoflow's own jobs (nomad/*.nomad.hcl): roles only the job of that name may use.
    _ensure_nomad_role(jwt_auth, s, "leoflow-scheduler", s.scheduler_policy, "leoflow-scheduler", report)
    _ensure_nomad_role(jwt_auth, s, "leoflow-server", s.server_policy, "leoflow-server", report)


def _ensure_nomad_role(jwt_auth: Any, s: BootstrapSettings, name: str, policy: str, job: str | None,
                       report: Report) -> None:
    role = _read_or_none(f"read JWT role {name}", lambda: jwt_auth.read_role(name, path=s.nomad_jwt_mount))
    rd = (role or {}).get("data")
    bound = {"nomad_job_id": job} if job else {}
    if rd and rd.get("token_policies") == [policy] and rd.get("bound_audiences") == [s.nomad_audience] \
            and (rd.get("bound_claims") or {}) == bound:
        report.add("nomad-jwt-role", name, "unchanged")
        return
    _call(f"write JWT role {name}", lambda: jwt_auth.create_role(
        name, user_claim="/nomad_job_id", user_claim_json_pointer=True, allowed_redirect_uris=[],
        role_type="jwt", bound_audiences=[s.nomad_audience], token_type="service",  # noqa: S106 - a kind
        token_period="30m",  # noqa: S106 - a duration
        token_policies=[policy], path=s.nomad_jwt_mount, bound_claims=bound or None,
        claim_mappings={"nomad_namespace": "nomad_namespace", "nomad_job_id": "nomad_job_id",
                        "nomad_task": "nomad_task"}))
    report.add("nomad-jwt-role", name, "created" if not rd else "updated")


def bootstrap(client: hvac.Client, s: BootstrapSettings) -> Report:
    """Everything but per-agent credentials; run with a token that may manage sys/, auth/ and identity/."""
    report = Report()
    _ensure_kv(client, s, report)
    _ensure_approle(client, s, report)
    _ensure_pki(client, s, report)
    _ensure_policy(client, s.agent_policy, agent_policy(s), report)
    _ensure_policy(client, s.server_policy, server_policy(s), report)
    _ensure_policy(client, s.scheduler_policy, scheduler_policy(s), report)
    _ensure_policy(client, s.task_policy, task_policy(s), report)
    _ensure_oidc(client, s, report)
    _ensure_approle_role(client, s, SERVER_ROLE, s.server_policy, report)
    _ensure_session_key(client, s, report)
    _ensure_nomad_jwt(client, s, report)
    return report


# -- per agent --------------------------------------------------------------------------------
def agent_role_name(agent_id: str) -> str:
    return AGENT_ROLE_PREFIX + agent_id


def add_agent(client: hvac.Client, s: BootstrapSettings, agent_id: str, pools: list[str],
              report: Report | None = None) -> str:
    """Create or update one agent's AppRole role and entity; returns its role id (not a secret).

    The entity's metadata (agent id, comma-joined pools) is what the identity token template
    copies into the ``agent_id`` and ``pools`` claims, so changing an agent's pools here takes
    effect with its next identity token, without touching the agent host.
    """
    report = report if report is not None else Report()
    if not agent_id or not all(c.isalnum() or c in "-_." for c in agent_id):
        raise VaultError(f"agent id {agent_id!r}: use letters, digits, '-', '_' and '.' only")
    clean = [p.strip() for p in pools if p.strip()]
    if not clean:
        raise VaultError("an agent needs at least one pool")
    accessor = _ensure_approle(client, s, Report())
    role = agent_role_name(agent_id)
    _ensure_approle_role(client, s, role, s.agent_policy, report)
    role_id = data(_call(f"read the role id of {role}", lambda: client.auth.approle.read_role_id(
        role, mount_point=s.approle_mount)), "read role id")["role_id"]
    ident = client.secrets.identity
    metadata = {"agent_id": agent_id, "pools": ",".join(clean)}
    existing = _read_or_none(f"read entity {role}", lambda: ident.read_entity_by_name(role))
    ed = existing.get("data", {}) if isinstance(existing, dict) else None
    if ed is None or (ed.get("metadata") or {}) != metadata:
        _call(f"write entity {role}", lambda: ident.create_or_update_entity_by_name(role, metadata=metadata))
        report.add("entity", role, "created" if ed is None else "updated")
        existing = _call(f"read entity {role}", lambda: ident.read_entity_by_name(role))
        ed = existing["data"]
    else:
        report.add("entity", role, "unchanged")
    aliases = ed.get("aliases") or []
    if any(a.get("mount_accessor") == accessor and a.get("name") == role_id for a in aliases):
        report.add("entity-alias", role, "unchanged")
    else:
        _call(f"write entity alias for {role}", lambda: ident.create_or_update_entity_alias(
            name=role_id, canonical_id=ed["id"], mount_accessor=accessor))
        report.add("entity-alias", role, "created")
    return str(role_id)


def new_secret_id(client: hvac.Client, s: BootstrapSettings, role: str, wrap_ttl: str | None = None) -> str:
    """A fresh secret id for an AppRole role, or (``wrap_ttl``) a single-use wrapping token holding it."""
    answer = _call(f"generate a secret id for {role}", lambda: client.auth.approle.generate_secret_id(
        role, mount_point=s.approle_mount, wrap_ttl=wrap_ttl))
    if wrap_ttl:
        token = (answer.get("wrap_info") or {}).get("token") if isinstance(answer, dict) else None
        if not token:
            raise VaultError(f"generate a wrapped secret id for {role}: Vault answered without a wrapping token")
        return str(token)
    return str(data(answer, "generate secret id")["secret_id"])


def role_id(client: hvac.Client, s: BootstrapSettings, role: str) -> str:
    return str(data(_call(f"read the role id of {role}", lambda: client.auth.approle.read_role_id(
        role, mount_point=s.approle_mount)), "read role id")["role_id"])


def revoke_secret_ids(client: hvac.Client, s: BootstrapSettings, role: str) -> int:
    """Destroy every secret id of a role (a lost agent host): its next login is refused."""
    listed = _read_or_none(f"list secret ids of {role}", lambda: client.auth.approle.list_secret_id_accessors(
        role, mount_point=s.approle_mount))
    accessors = ((listed or {}).get("data") or {}).get("keys") or []
    for acc in accessors:
        _call(f"destroy a secret id of {role}", lambda a=acc: client.auth.approle.destroy_secret_id_accessor(
            role, a, mount_point=s.approle_mount))
    return len(accessors)


def rotate_signing_key(client: hvac.Client, s: BootstrapSettings, verification_ttl: str | None = None) -> None:
    """Rotate the OIDC key now. (hvac 2.4's ``rotate_named_key`` posts to the key itself instead of
    ``.../rotate``, which silently rotates nothing; we call the documented endpoint directly.)"""
    body = {"verification_ttl": verification_ttl} if verification_ttl else {}
    _call(f"rotate identity/oidc/key/{s.oidc_key}", lambda: client.adapter.post(
        f"/v1/identity/oidc/key/{s.oidc_key}/rotate", json=body))
