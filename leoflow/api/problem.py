"""RFC 7807 problem details for every error the server emits.

Why one module: the Airflow UI shows ``detail`` verbatim when it is a string (and crashes on a
``detail`` list without ``loc``), so every error path, including Falcon's own 404/405/415 and
unhandled exceptions, must come out in one shape: ``{type, title, status, detail, instance}`` with
``Content-Type: application/problem+json``. Validation problems add ``field`` (dotted location,
e.g. ``query.limit``) and a FastAPI-style ``errors`` list with ``loc`` arrays, so both the UI and
scripts written against Airflow can read them.

A 500 never shows a traceback: it is logged with a correlation id and only that id is shown.

Store refusals that the client caused are mapped here once, for every resource: a path id that
cannot be a store key (empty, too long) names nothing stored, so it is a 404 (Airflow's router
never matches an empty segment either); a body value over the store's record limits is a 413
naming the body field that carries the bulk of it (``body.value``, ``body.conf``, ...).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import falcon

log = logging.getLogger("leoflow.api.problem")

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://leoflow.dev/problems/"


class Problem(falcon.HTTPError):
    """An HTTP error with a problem ``type`` slug and optional extension members.

    ``detail`` is the human sentence the UI shows; keep it specific ("dag_id 'x' not found").
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(falcon.code_to_http_status(status), title=title, description=detail, headers=headers)
        self.problem_type = type_
        self.field = field
        self.extra = dict(extra or {})


def bad_request(detail: str, *, field: str | None = None) -> Problem:
    return Problem(400, detail, type_="bad-request", field=field)


def invalid(field: str, message: str) -> Problem:
    """422, as Airflow answers request validation failures; ``field`` is ``body.x`` / ``query.y`` / ``path.z``."""
    loc = field.split(".")
    return Problem(
        422,
        f"{field}: {message}",
        type_="validation-error",
        title="Validation Error",
        field=field,
        extra={"errors": [{"loc": loc, "msg": message, "type": "value_error"}]},
    )


def not_found(detail: str) -> Problem:
    return Problem(404, detail, type_="not-found")


def conflict(detail: str) -> Problem:
    return Problem(409, detail, type_="conflict")


def forbidden(detail: str = "Forbidden") -> Problem:
    # The exact string "Forbidden" makes the UI stop re-requesting that URL; keep it for role denials.
    return Problem(403, detail, type_="forbidden")


def unauthorized(detail: str = "Not authenticated") -> Problem:
    return Problem(401, detail, type_="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def not_implemented(feature: str) -> Problem:
    return Problem(
        501,
        f"{feature} is not available in Leoflow yet",
        type_="not-implemented",
        extra={"feature": feature},
    )


def _slug_for(status: int) -> str:
    return {
        400: "bad-request",
        401: "unauthorized",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        409: "conflict",
        411: "length-required",
        413: "payload-too-large",
        415: "unsupported-media-type",
        422: "validation-error",
        429: "too-many-requests",
        500: "internal-error",
        501: "not-implemented",
        503: "unavailable",
    }.get(status, "about:blank")


def problem_document(error: falcon.HTTPError, instance: str) -> dict[str, Any]:
    status = error.status_code
    title = error.title or _reason(status)
    if title.startswith(f"{status} "):  # Falcon's default titles are whole status lines
        title = title[len(str(status)) + 1 :]
    detail = error.description or title
    slug = getattr(error, "problem_type", None) or _slug_for(status)
    doc: dict[str, Any] = {
        "type": slug if slug == "about:blank" else TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": str(detail),
        "instance": instance,
    }
    field = getattr(error, "field", None)
    if field:
        doc["field"] = field
    extra = getattr(error, "extra", None)
    if extra:
        for key, value in extra.items():
            doc.setdefault(key, value)
    return doc


def _reason(status: int) -> str:
    text = falcon.code_to_http_status(status)
    return text.partition(" ")[2] or text


def serialize(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon error serializer: always problem+json, whatever the client's Accept says."""
    resp.content_type = PROBLEM_CONTENT_TYPE
    resp.text = json.dumps(problem_document(error, req.path), separators=(",", ":"))
    resp.append_header("Vary", "Accept")


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Mapping[str, Any]) -> None:
    """Last-resort handler: log the traceback with a correlation id; show only the id."""
    if isinstance(ex, falcon.HTTPError):  # pragma: no cover - falcon routes these elsewhere
        raise ex
    correlation_id = getattr(req.context, "request_id", None) or uuid.uuid4().hex
    log.error(
        "unhandled error",
        exc_info=ex,
        extra={"correlation_id": correlation_id, "route": getattr(req, "uri_template", None), "path": req.path},
    )
    raise Problem(
        500,
        f"internal error; correlation id {correlation_id} (the server log has the details)",
        type_="internal-error",
        extra={"correlation_id": correlation_id},
    )


BODY_DOCUMENT = "json_document"  # req.context attribute where the parsed JSON body is kept
BLAME_BODY_BYTES = 64 * 1024  # a body field smaller than this cannot be why a record passed 360 KiB


def largest_field(document: Any, root: str = "body") -> tuple[str, int]:
    """Dotted location of the body field holding most of the bytes, and its size as JSON.

    Descends through objects and through lists of objects (bulk ``actions``/``entities``), and
    stops at the first field whose value is a scalar or a free-form object (``conf``, a JSON
    variable value): that is the field a user has to shrink.
    """
    path, node, record = root, document, True
    while True:
        if record and isinstance(node, dict) and node:
            name, node = max(node.items(), key=lambda kv: _json_size(kv[1]))
            path, record = f"{path}.{name}", False
        elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
            index = max(range(len(node)), key=lambda i: _json_size(node[i]))
            path, node, record = f"{path}.{index}", node[index], True
        else:
            return path, _json_size(node)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def handle_value_too_large(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    document = getattr(req.context, BODY_DOCUMENT, None)
    if document is None or largest_field(document)[1] < BLAME_BODY_BYTES:
        # Not what the client sent (no body, or one far too small to fill a record): a record the
        # server built outgrew the store. That is a bug to log, not a client error to blame on a field.
        handle_unexpected(req, resp, ex, params)
        return
    from leoflow.store.repos.errors import XComTooLarge

    # A repository's own cap (XComs: 256 KiB) says more than the store's generic limits.
    raise value_too_large(document, reason=str(ex) if isinstance(ex, XComTooLarge) else None)


def value_too_large(document: Any, root: str = "body", *, reason: str | None = None) -> Problem:
    """413 naming the field of ``document`` (a request body, or one bulk entity at ``root``) to shrink."""
    from leoflow.store.port import MAX_TXN_BYTES, MAX_VALUE_BYTES

    field, size = largest_field(document, root)
    why = reason or (f"the state store keeps at most {MAX_VALUE_BYTES} bytes per record and "
                     f"{MAX_TXN_BYTES} bytes per write")
    return Problem(413, f"{field} is too large to store ({size} bytes as JSON): {why}",
                   type_="payload-too-large", field=field)


def handle_invalid_key(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    empty = [name for name, value in (params or {}).items() if value == ""]
    if empty or req.method in ("GET", "HEAD", "DELETE"):
        detail = (f"path.{empty[0]} is empty: nothing can be found at {req.path}" if empty
                  else f"Not Found: an id in {req.path} is too long or malformed to name a stored record")
        raise Problem(404, detail, type_="not-found", field=f"path.{empty[0]}" if empty else None)
    # The store's message quotes the internal key; the client only needs to know what to change.
    raise bad_request("an identifier in this request is empty, or too long to be stored (store keys hold at most "
                      "1024 bytes, and characters other than letters, digits, '_' and '-' take 3 bytes each)")


def handle_store_unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    correlation_id = getattr(req.context, "request_id", None) or uuid.uuid4().hex
    log.warning("store unavailable", extra={"correlation_id": correlation_id, "error": str(ex), "path": req.path})
    raise Problem(
        503,
        f"the state store is unavailable; retry later (correlation id {correlation_id})",
        type_="unavailable",
        headers={"Retry-After": "5"},
        extra={"correlation_id": correlation_id},
    )


def install(app: falcon.App) -> None:
    """Route every error through the problem serializer, including Falcon's own and unknown ones.

    Falcon picks the most specific handler by MRO, so its built-in HTTPError handler (which calls
    the serializer) still wins for 404/405/415, and ``Exception`` only catches the unexpected.
    """
    from leoflow.store.port import InvalidKey, StoreUnavailable, ValueTooLarge

    app.set_error_serializer(serialize)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(StoreUnavailable, handle_store_unavailable)
    app.add_error_handler(ValueTooLarge, handle_value_too_large)
    app.add_error_handler(InvalidKey, handle_invalid_key)
