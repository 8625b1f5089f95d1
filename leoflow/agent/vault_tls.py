"""The agent's mTLS client certificate from Vault PKI (``[vault] pki_role``), kept fresh on disk.

With ``[vault] pki_role`` set the agent issues ``<pki_mount>/issue/<pki_role>`` (common name = its
agent id, life ``[vault] pki_ttl``) into ``[vault] pki_dir`` (default ``$LEOFLOW_HOME/agent-tls``)
before its first dial and renews it at 2/3 of its life; the dial options point at those files
unless ``[agent] tls_cert_file`` names a certificate of the operator's own (adr/0095).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from leoflow.agent.dial import DialOptions
from leoflow.config import Config
from leoflow.secrets.login import VaultSession
from leoflow.secrets.pki import CertKeeper


def cert_keeper(config: Config, agent_id: str, session: VaultSession | None) -> CertKeeper | None:
    vault = config.vault
    if not vault.pki_role or session is None:
        return None
    directory = Path(vault.pki_dir) if vault.pki_dir else config.home_path / "agent-tls"
    return CertKeeper(session, role=vault.pki_role, common_name=agent_id, directory=directory,
                      mount=vault.pki_mount, ttl=vault.pki_ttl)


def with_certificate(opts: DialOptions, keeper: CertKeeper | None) -> DialOptions:
    """Dial options using the Vault-issued files (an explicit ``[agent] tls_cert_file`` wins)."""
    if keeper is None or opts.tls_cert_file:
        return opts
    files = keeper.ensure()
    return replace(opts, tls_cert_file=str(files.cert), tls_key_file=str(files.key),
                   tls_ca_file=opts.tls_ca_file or str(files.ca))
