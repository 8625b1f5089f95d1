"""The declared secrets of one try, resolved when it is handed to an agent (adr/0093).

The queue entry only names the connections and variables a task declares (``TryRequest``); the
values are looked up here at delivery time and travel inside the assignment on the agent's
authenticated stream, never into the store. A task gets exactly what it declares: nothing is
inherited from the server or from other tasks.

The same lookup gives the try's :class:`~leoflow.secrets.masking.Masker`; the server runs every
log line of the try through it before writing. Maskers are cached per try; after a server restart
they are rebuilt from the queue entry (the request still names the declared secrets).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from leoflow.config import Config
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.secrets.airflow import env_name
from leoflow.secrets.backend import SecretMissing, SecretsBackend, SecretsUnavailable, vault_kv
from leoflow.secrets.login import session_from_config
from leoflow.secrets.masking import Masker
from leoflow.store.port import Store
from leoflow.store.repos.agent_queue import AgentQueue, QueuedTry
from leoflow.store.repos.base import Keyspace
from leoflow.store.repos.connections import ConnectionRepository
from leoflow.store.repos.variables import VariableRepository

log = logging.getLogger(__name__)

SECRET_ENV_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW_VAR_")


class TaskSecrets:
    def __init__(self, backend: SecretsBackend, *, cache_size: int = 4096, unavailable_grace: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self._maskers: OrderedDict[TryKey, Masker] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # How long a try may wait for an unreachable Vault before it fails (a blip must not fail
        # tasks; an outage must not leave them queued forever without a word).
        self.unavailable_grace = unavailable_grace
        self._clock = clock
        self._waiting_since: dict[TryKey, float] = {}

    def waited(self, key: TryKey) -> float:
        """Seconds this try has been held back for unavailable secrets (0 the first time)."""
        now = self._clock()
        with self._lock:
            since = self._waiting_since.setdefault(key, now)
            if len(self._waiting_since) > self._cache_size:
                self._waiting_since.pop(next(iter(self._waiting_since)))
        return now - since

    def settled(self, key: TryKey) -> None:
        with self._lock:
            self._waiting_since.pop(key, None)

    def resolve(self, request: TryRequest) -> tuple[dict[str, str], Masker]:
        """The env to add for this try and its masker. Raises SecretMissing or SecretsUnavailable."""
        env: dict[str, str] = {}
        masker = Masker()
        for conn_id in request.connections:
            conn = self.backend.connection(conn_id)
            if conn is None:
                raise SecretMissing(self.backend.missing_message("connection", conn_id))
            env[env_name("CONN", conn_id)] = conn.uri
            masker.add(*conn.secrets)
        for key in request.variables:
            var = self.backend.variable(key)
            if var is None:
                raise SecretMissing(self.backend.missing_message("variable", key))
            env[env_name("VAR", key)] = var.value
            masker.add(*var.secrets)
        return env, masker

    def env_for(self, request: TryRequest) -> dict[str, str]:
        """The try's full env: its own (minus any smuggled ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``) plus
        the declared secrets; remembers the masker."""
        secret_env, masker = self.resolve(request)
        self._remember(request.key, masker)
        base = {k: v for k, v in request.env.items() if not k.startswith(SECRET_ENV_PREFIXES)}
        return {**base, **secret_env}

    def _remember(self, key: TryKey, masker: Masker) -> None:
        with self._lock:
            self._maskers[key] = masker
            self._maskers.move_to_end(key)
            while len(self._maskers) > self._cache_size:
                self._maskers.popitem(last=False)

    def cached(self, key: TryKey) -> Masker | None:
        """The try's masker if it was already resolved; never a Vault call (for the executor's own notes)."""
        with self._lock:
            return self._maskers.get(key)

    def declared_masker(self, key: TryKey, connections: Sequence[str],
                        variables: Sequence[str]) -> tuple[Masker, list[str]]:
        """The masker for a try that got its secrets elsewhere (Nomad's Vault template, adr/0097).

        Same lookup as delivery (Vault first, the store as fallback, only what is declared), but a
        declared id found nowhere is not an error here: the task is already running, so its lines
        must still be copied, and a value found nowhere cannot be masked by waiting. It is named in
        the second item instead. Raises SecretsUnavailable when Vault cannot answer (the caller
        holds the lines back and asks again).
        """
        found = self.cached(key)
        if found is not None:
            return found, []
        masker = Masker()
        missing: list[str] = []
        for kind, idents in (("connection", connections), ("variable", variables)):
            for ident in idents:
                try:
                    held = self.backend.lookup(kind, ident)
                except SecretMissing as exc:  # an id that cannot name a secret
                    missing.append(str(exc))
                    continue
                if held is None:
                    missing.append(self.backend.missing_message(kind, ident))
                else:
                    masker.add(*held.secrets)
        self._remember(key, masker)
        return masker, missing

    def masker(self, key: TryKey, request: Callable[[], TryRequest | None]) -> Masker:
        with self._lock:
            found = self._maskers.get(key)
        if found is not None:
            return found
        req = request()
        if req is None or not (req.connections or req.variables):
            masker = Masker()
        else:
            try:
                _env, masker = self.resolve(req)
            except (SecretMissing, SecretsUnavailable) as exc:
                # Cannot rebuild the mask set: better to hold the lines back than to store a secret.
                raise SecretsUnavailable(f"cannot mask the log of {key.task_id}: {exc}") from exc
        self._remember(key, masker)
        return masker

    def mask(self, key: TryKey, text: str, request: Callable[[], TryRequest | None]) -> str:
        return self.masker(key, request).mask(text)

    def forget(self, key: TryKey) -> None:
        with self._lock:
            self._maskers.pop(key, None)


def prepare(secrets: TaskSecrets | None, repo: AgentQueue, entry: QueuedTry) -> dict[str, str] | None:
    """The env to deliver with a pending try, or None when it must not be delivered now.

    A declared secret that exists nowhere fails the try at once with a reason naming it (a task
    that cannot get its credentials would only fail later, less clearly); Vault being unavailable
    leaves the try pending for the next dispatch round, up to ``unavailable_grace`` seconds, then
    fails it with the reason. A try never runs without what it declares.
    """
    request = entry.request
    if secrets is None:
        return {k: v for k, v in request.env.items() if not k.startswith(SECRET_ENV_PREFIXES)}
    try:
        env = secrets.env_for(request)
    except SecretMissing as exc:
        _fail(repo, entry, str(exc))
        return None
    except SecretsUnavailable as exc:
        waited = secrets.waited(request.key)
        if waited >= secrets.unavailable_grace:
            _fail(repo, entry, f"declared secrets could not be read for {waited:.0f}s: {exc}")
            secrets.settled(request.key)
        else:
            log.warning("secrets unavailable; the try stays pending", extra={
                "task_id": request.key.task_id, "error": str(exc), "waited": round(waited, 1)})
        return None
    secrets.settled(request.key)
    return env


def _fail(repo: AgentQueue, entry: QueuedTry, reason: str) -> None:
    """The try never runs without its secrets: it fails now with a reason naming what is missing."""
    event = TryEvent(entry.request.key, TryOutcome.FAILED, datetime.now(UTC), reason=reason)
    if repo.finish(entry, event):
        log.warning("try failed before delivery", extra={"task_id": entry.request.key.task_id, "reason": reason})


def task_secrets(config: Config, store: Store) -> TaskSecrets:
    """Built from config: Vault KV when ``[vault]`` can log in, and the store's repositories."""
    ks = Keyspace(config.store.prefix)
    backend = SecretsBackend(ConnectionRepository(store, ks), VariableRepository(store, ks),
                             vault_kv(config.vault, session_from_config(config.vault)))
    return TaskSecrets(backend)
