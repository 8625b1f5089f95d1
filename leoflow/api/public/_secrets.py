"""Which values the API hides, decided by key name exactly as Airflow's secrets masker does.

Airflow 3.3.2 (``airflow/_shared/secrets_masker``) hides a Variable's value, a Connection's
password and any key of a Connection's ``extra`` when the lower-cased name, with runs of non-word
characters turned into ``_``, *contains* one of its sensitive words. Values that are JSON objects
are walked, and any sensitive key at any depth is replaced by ``***``. We copy the word list and
the rule so a value hidden by Airflow is hidden here, and nothing more.
"""

from __future__ import annotations

import json
import re
from typing import Any

REPLACEMENT = "***"

DEFAULT_SENSITIVE_FIELDS = frozenset(
    {
        "access_key",
        "access_token",
        "api_key",
        "apikey",
        "auth_header",
        "authorization",
        "bearer",
        "connection_string",
        "dsn",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "proxy",
        "proxy_password",
        "proxies",
        "secret",
        "service_account",
        "service_key",
        "token",
        "keyfile_dict",
        "webhook_url",
    }
)

_NON_WORD = re.compile(r"\W+")


def is_sensitive(name: object) -> bool:
    if not isinstance(name, str):
        return False
    normalized = _NON_WORD.sub("_", name.strip().lower())
    return any(word in normalized for word in DEFAULT_SENSITIVE_FIELDS)


def _redact_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_all(v) for v in value]
    return REPLACEMENT


def redact(value: Any, name: str | None = None) -> Any:
    """Airflow's ``redact(value, name)`` for JSON-like values (key-name rules only)."""
    if name is not None and is_sensitive(name):
        return _redact_all(value)
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def variable_value(key: str, value: str | None) -> str | None:
    """What ``VariableResponse.value`` shows: a JSON object is walked, anything else judged by the key."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except (json.JSONDecodeError, ValueError):
        return str(redact(value, key))
    return json.dumps(redact(parsed, key))


def connection_extra(extra: str | None) -> str | None:
    """``ConnectionResponse.extra``: sensitive keys of the JSON object hidden; unparsable text hidden whole."""
    if extra is None or extra == "":
        return extra
    try:
        parsed = json.loads(extra)
    except (json.JSONDecodeError, ValueError):
        return "Encountered non-JSON in `extra` field"
    return json.dumps(redact(parsed))


def connection_password(password: str | None) -> str | None:
    return None if password is None else REPLACEMENT


def merge(new: Any, old: Any, name: str | None = None) -> Any:
    """Undo masking on write: a sensitive field sent back as ``***`` keeps its stored value (Airflow's merge)."""
    if name is not None and is_sensitive(name) and new == REPLACEMENT:
        return old
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: merge(v, old.get(k), k) for k, v in new.items()}
    return new
