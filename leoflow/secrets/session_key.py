"""The key signing UI/API session tokens, read from Vault so every server replica shares it (adr/0094).

Sessions are HS256 JWTs (leoflow/api/auth/tokens.py); a replica that signs with a key of its own
would reject every session another replica issued. With ``[vault] session_key_path`` set, each
``leoflow-server`` reads the ``key`` field of that KV v2 secret at start (and on SIGHUP, with the
rest of the config); ``leoflow vault bootstrap`` creates it once with check-and-set, so concurrent
bootstraps never replace it. Without the setting, ``[auth] jwt_secret``/``jwt_secret_file`` or
the standalone key file apply as before.
"""

from __future__ import annotations

import logging

from leoflow.config import Config
from leoflow.secrets.login import session_from_config
from leoflow.secrets.vault import VaultError, explain

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32


def load_session_key(config: Config) -> bytes | None:
    """The shared key from Vault, None when ``[vault] session_key_path`` is unset; VaultError otherwise."""
    vault = config.vault
    path = vault.session_key_path.strip("/")
    if not path:
        return None
    session = session_from_config(vault)
    if session is None:
        raise VaultError("config key vault.session_key_path needs Vault login settings: vault.addr with "
                         "vault.role_id_file + vault.secret_id_file, or vault.token_file")
    where = f"{vault.kv_mount}/{path}"
    try:
        answer = session.client().secrets.kv.v2.read_secret_version(path, mount_point=vault.kv_mount,
                                                                   raise_on_deleted_version=True)
    except VaultError:
        raise
    except Exception as exc:
        err = explain(exc, f"read the session key {where}")
        if "not found" in str(err):
            raise VaultError(f"the session key {where} does not exist: run `leoflow vault bootstrap` with "
                             "vault.session_key_path set") from exc
        raise err from exc
    key = ((answer or {}).get("data") or {}).get("data", {}).get("key")
    if not isinstance(key, str) or len(key.encode()) < MIN_KEY_BYTES:
        raise VaultError(f"the session key {where} needs a 'key' field of at least {MIN_KEY_BYTES} bytes")
    log.info("session signing key loaded from Vault", extra={"path": where})
    return key.encode()
