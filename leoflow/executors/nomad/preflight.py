"""Before a try becomes a Nomad job: can Nomad's Vault template give it every secret it declares?

Why: a Nomad task receives its connections/variables only from Nomad's Vault integration
(adr/0082), and consul-template renders a KV path that does not exist as nothing at all. A
connection held only in the Leoflow store, or nowhere, would silently be absent from the task's
env. Agents never run a try without what it declares (adr/0093); this check gives Nomad tries the
same promise (adr/0099). The lookup is the delivery's own (``SecretsBackend``: Vault KV v2 first,
the store as fallback), so the answer is the one the agents path and the log masker get.
"""

from __future__ import annotations

from collections.abc import Sequence

from leoflow.secrets.backend import SecretMissing, SecretsBackend, VaultKv
from leoflow.secrets.delivery import TaskSecrets

NOT_CONFIGURED = ("Vault is not configured for the scheduler ({detail}), and Nomad tasks receive secrets only "
                  "from Vault: configure [vault] for the scheduler (addr and a login, secrets_enabled = true) "
                  "or run the task on an agent queue")


def _declared(connections: Sequence[str], variables: Sequence[str]) -> str:
    names = [f"connection {c!r}" for c in connections] + [f"variable {v!r}" for v in variables]
    return "the task declares " + ", ".join(names)


def _problem(backend: SecretsBackend, vault: VaultKv, kind: str, ident: str) -> str | None:
    """Why the template cannot render this id, or None when Vault holds it. Raises SecretsUnavailable."""
    try:
        found = backend.lookup(kind, ident)
    except SecretMissing as exc:  # an id that cannot name a secret anywhere
        return str(exc)
    if found is None:
        return backend.missing_message(kind, ident)
    if found.source.startswith("vault:"):
        return None
    return (f"{kind} {ident!r} is held in the Leoflow store, but Nomad tasks receive secrets only from Vault "
            f"({vault.where(kind, ident)}): move it to Vault or run the task on an agent queue")


def undeliverable(secrets: TaskSecrets | None, connections: Sequence[str], variables: Sequence[str]) -> str | None:
    """The reason the try must fail before any job is registered, or None when Vault holds every
    declared id (or nothing is declared).

    Every declared id is checked, so one failure names all that is wrong. Raises
    ``SecretsUnavailable`` when Vault cannot answer: the caller holds the try back and asks again,
    because neither "run without it" nor "it does not exist" would be true.
    """
    if not (connections or variables):
        return None
    if secrets is None:
        return f"{_declared(connections, variables)}, but " + NOT_CONFIGURED.format(detail="no secrets backend")
    backend, vault = secrets.backend, secrets.backend.vault
    if vault is None:
        detail = "no [vault] login, or [vault] secrets_enabled = false"
        return f"{_declared(connections, variables)}, but " + NOT_CONFIGURED.format(detail=detail)
    problems = [p for p in ([_problem(backend, vault, "connection", c) for c in connections]
                            + [_problem(backend, vault, "variable", v) for v in variables]) if p]
    return "; ".join(problems) or None
