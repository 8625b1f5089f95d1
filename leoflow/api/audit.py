"""Event log (Airflow's ``/api/v2/eventLogs``): every successful write through the API is recorded.

Call ``record`` from a responder after the write succeeded::

    from leoflow.api import audit
    audit.record(req, "patch_dag", dag_id=dag_id, extra={"is_paused": True})

``event`` is the Airflow operation id in snake_case (``patch_dag``, ``trigger_dag_run``,
``delete_connection`` ...), as Airflow's ``action_logging`` names it. ``owner`` is the
authenticated user. ``extra`` is stored as a JSON string with secret-looking values masked
(password, secret, token, key-like names), like Airflow's masking of request bodies; a failure to
write the audit entry is logged but never fails the already-committed write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import falcon

from leoflow.domain.records import AuditEvent

log = logging.getLogger("leoflow.api.audit")

_SENSITIVE = ("password", "secret", "token", "passwd", "api_key", "apikey", "private_key", "access_key",
              "authorization", "credential", "extra_dejson")
MASK = "***"


def is_sensitive(name: str) -> bool:
    low = name.lower()
    return any(s in low for s in _SENSITIVE)


def mask(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_sensitive(k) else mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def record(
    req: falcon.Request,
    event: str,
    *,
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    map_index: int | None = None,
    try_number: int | None = None,
    logical_date: datetime | None = None,
    extra: Mapping[str, Any] | str | None = None,
) -> None:
    ctx = req.context.app_ctx
    user = getattr(req.context, "user", None)
    if isinstance(extra, Mapping):
        extra_text: str | None = json.dumps(mask(dict(extra)), default=str, separators=(",", ":"))
    else:
        extra_text = extra
    try:
        ctx.repos.audit.append(AuditEvent(
            event_log_id=0,
            when=ctx.clock(),
            event=event,
            owner=user.username if user else None,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            try_number=try_number,
            logical_date=logical_date,
            extra=extra_text,
        ))
    except Exception as exc:
        log.error("could not record audit event", extra={"event": event, "error": str(exc),
                                                         "request_id": getattr(req.context, "request_id", None)})
