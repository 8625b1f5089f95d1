"""Request parsing and response shaping with Airflow's query semantics.

Every endpoint module uses these so the traps listed in the research (``airflow-ui.md`` §7) are
handled once:

* timestamps out: UTC ISO-8601 with ``Z`` (``iso``); timestamps in: timezone-aware only, naive is
  a 422 naming the parameter (``query_datetime``), as Airflow's ``AwareDatetime``;
* ``limit``/``offset``: non-negative ints, ``limit`` defaults to 50 and is capped at
  ``[server] maximum_page_limit`` (Airflow clamps silently; negative or non-numeric is a 422);
* repeated array params (``state=a&state=b``, never comma-split) via ``query_list``; empty
  strings mean "unset" (``query_str``), except ``cursor=`` which means "cursor mode, first page";
* ``order_by`` with ``-`` for descending, repeatable, validated against an allow-list (400 on an
  unknown field, as Airflow);
* ``*_pattern`` is a case-insensitive substring with ``|`` as OR; ``*_prefix_pattern`` is a
  case-sensitive prefix; ``~`` as a path id means "all";
* collections carry ``total_entries``; cursor pages carry ``next_cursor``/``previous_cursor``;
* JSON bodies: content type checked (415), size bounded (413), malformed JSON (400 with line and
  column), schema-checked with jsonschema (422 naming ``body.<field>``; unknown fields rejected).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

import falcon
import jsonschema

from leoflow.api.problem import Problem, bad_request, invalid

T = TypeVar("T")

WILDCARD = "~"
DEFAULT_LIMIT = 50
DEFAULT_MAX_LIMIT = 1000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


# ---------------------------------------------------------------- timestamps


def iso(value: datetime | None) -> str | None:
    """UTC, microseconds kept, ``Z`` suffix (naive values are taken as UTC: records are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_aware(text: str, field: str) -> datetime:
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(field, f"{text!r} is not an ISO-8601 datetime") from None
    if value.tzinfo is None:
        raise invalid(field, f"{text!r} has no timezone; send e.g. {text}Z")
    return value.astimezone(UTC)


def time_delta(value: timedelta | None) -> dict[str, Any] | None:
    """Airflow's ``TimeDelta`` object (the UI calls Object.keys on it; never a bare number)."""
    if value is None:
        return None
    return {"__type": "TimeDelta", "days": value.days, "seconds": value.seconds, "microseconds": value.microseconds}


# ---------------------------------------------------------------- query parameters


def query_str(req: falcon.Request, name: str) -> str | None:
    value = req.get_param(name)
    if value is None or value == "":
        return None
    return value


def query_list(req: falcon.Request, name: str) -> list[str]:
    """Repeated keys, in order; blanks dropped. Never splits on commas (Airflow does not)."""
    values = req.get_param_as_list(name) or []
    return [v for v in values if v != ""]


@overload
def query_int(req: falcon.Request, name: str, *, default: int, minimum: int | None = None,
              maximum: int | None = None) -> int: ...


@overload
def query_int(req: falcon.Request, name: str, *, default: None = None, minimum: int | None = None,
              maximum: int | None = None) -> int | None: ...


def query_int(req: falcon.Request, name: str, *, default: int | None = None, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    """``?name=`` as an int (422 naming ``query.<name>``); with an int ``default`` the result is an int."""
    raw = query_str(req, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"query.{name}", f"{raw!r} is not a valid integer") from None
    if minimum is not None and value < minimum:
        raise invalid(f"query.{name}", f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise invalid(f"query.{name}", f"must be <= {maximum}, got {value}")
    return value


def path_int(name: str, raw: str, *, minimum: int | None = None) -> int:
    """An integer path parameter; 422 naming ``path.<name>`` otherwise, as FastAPI answers."""
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"path.{name}", f"{raw!r} is not a valid integer") from None
    if minimum is not None and value < minimum:
        raise invalid(f"path.{name}", f"must be >= {minimum}")
    return value


def query_float(req: falcon.Request, name: str) -> float | None:
    raw = query_str(req, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid(f"query.{name}", f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise invalid(f"query.{name}", f"{raw!r} is not a finite number")
    return value


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def query_bool(req: falcon.Request, name: str, *, default: bool | None = None) -> bool | None:
    raw = query_str(req, name)
    if raw is None:
        return default
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise invalid(f"query.{name}", f"{raw!r} is not a valid boolean")


def query_datetime(req: falcon.Request, name: str) -> datetime | None:
    raw = query_str(req, name)
    return None if raw is None else parse_aware(raw, f"query.{name}")


@dataclass(frozen=True)
class Range:
    """``<name>_gte/_gt/_lte/_lt`` bounds, as Airflow's range filters."""

    gte: Any = None
    gt: Any = None
    lte: Any = None
    lt: Any = None

    @property
    def empty(self) -> bool:
        return self.gte is None and self.gt is None and self.lte is None and self.lt is None

    def contains(self, value: Any) -> bool:
        if self.empty:
            return True
        if value is None:
            return False
        return not (
            (self.gte is not None and value < self.gte)
            or (self.gt is not None and value <= self.gt)
            or (self.lte is not None and value > self.lte)
            or (self.lt is not None and value >= self.lt)
        )


def datetime_range(req: falcon.Request, name: str) -> Range:
    return Range(*(query_datetime(req, f"{name}_{op}") for op in ("gte", "gt", "lte", "lt")))


def float_range(req: falcon.Request, name: str) -> Range:
    return Range(*(query_float(req, f"{name}_{op}") for op in ("gte", "gt", "lte", "lt")))


# ---------------------------------------------------------------- patterns and wildcards


def is_wildcard(path_id: str | None) -> bool:
    return path_id == WILDCARD


def pattern_matcher(pattern: str | None) -> Callable[[str | None], bool] | None:
    """``*_pattern``: case-insensitive substring, ``|`` = OR, ``~`` = all (SQL ILIKE ``%x%``).

    ``%`` and ``_`` inside a term act as SQL wildcards, as in Airflow.
    """
    if pattern is None or pattern == "" or pattern == WILDCARD:
        return None
    import re

    terms = [t for t in pattern.split("|") if t != ""]
    if not terms:
        return None
    regexes = []
    for term in terms:
        parts = []
        for ch in term.lower():
            parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        regexes.append(re.compile("".join(parts), re.DOTALL))

    def match(value: str | None) -> bool:
        if value is None:
            return False
        low = value.lower()
        return any(r.search(low) for r in regexes)

    return match


def prefix_matcher(pattern: str | None) -> Callable[[str | None], bool] | None:
    """``*_prefix_pattern``: case-sensitive prefix, ``|`` = OR, ``~`` = all."""
    if pattern is None or pattern == "" or pattern == WILDCARD:
        return None
    prefixes = tuple(t for t in pattern.split("|") if t != "")
    if not prefixes:
        return None
    return lambda value: value is not None and value.startswith(prefixes)


# ---------------------------------------------------------------- paging and ordering


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int

    def slice(self, rows: Sequence[T]) -> list[T]:
        return list(rows[self.offset : self.offset + self.limit])


def page(req: falcon.Request, *, default_limit: int = DEFAULT_LIMIT, max_limit: int | None = None) -> Page:
    cap = max_limit or _max_limit(req)
    limit = query_int(req, "limit", default=default_limit, minimum=0)
    offset = query_int(req, "offset", default=0, minimum=0)
    return Page(limit=min(limit, cap), offset=offset)


def _max_limit(req: falcon.Request) -> int:
    ctx = getattr(req.context, "app_ctx", None)
    value = getattr(getattr(getattr(ctx, "config", None), "server", None), "maximum_page_limit", None)
    return int(value) if value else DEFAULT_MAX_LIMIT


SortKey = Callable[[Any], Any]


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool


def order_by(req: falcon.Request, allowed: Iterable[str], default: str | Sequence[str]) -> list[Order]:
    """Parse repeated ``order_by`` (``-`` prefix = descending); 400 on a field not in ``allowed``."""
    allowed = set(allowed)
    values = query_list(req, "order_by") or ([default] if isinstance(default, str) else list(default))
    out: list[Order] = []
    for value in values:
        desc = value.startswith("-")
        name = value[1:] if desc else value
        if name not in allowed:
            raise bad_request(
                f"Ordering with '{name}' is disallowed or the attribute does not exist on the model; "
                f"allowed: {', '.join(sorted(allowed))}",
                field="query.order_by",
            )
        out.append(Order(name, desc))
    return out


class _Key:
    """Total order over mixed values where None sorts last ascending (first descending), as SQL NULLS."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Key) -> bool:
        a, b = self.v, other.v
        if a is None:
            return False
        if b is None:
            return True
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.v == other.v

    def __hash__(self) -> int:  # pragma: no cover - unused, keeps the type hashable
        return hash(self.v)


def sort_rows(rows: Iterable[T], orders: Sequence[Order], keys: Mapping[str, Callable[[T], Any]]) -> list[T]:
    """Stable multi-key sort: apply the least significant key first."""
    out = list(rows)
    for order in reversed(orders):
        out = _sort_pass(out, keys[order.field], order.descending)
    return out


def _sort_pass(rows: list[T], fn: Callable[[T], Any], descending: bool) -> list[T]:
    """One stable pass, ordered as ``_Key`` orders (None last ascending, first descending).

    Why not always ``_Key``: its Python-level ``__lt__`` ran ~20 times per row, most of the
    cost of listing 10,000 runs. Each key is computed once; values that compare natively (the
    usual case) sort as plain values (None as ``(True, 0)``), and only a TypeError (mixed types)
    falls back to ``_Key``, so the result is the same order as before.
    """
    if len(rows) < 2:
        return rows
    values = [fn(r) for r in rows]
    keyed: list[Any] = values
    if None in values:
        keyed = [(True, 0) if v is None else (False, v) for v in values]
    try:
        idx = sorted(range(len(rows)), key=keyed.__getitem__, reverse=descending)
    except TypeError:
        idx = sorted(range(len(rows)), key=lambda i: _Key(values[i]), reverse=descending)
    return [rows[i] for i in idx]


def collection(name: str, items: list[Any], total: int, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {name: items, "total_entries": total}
    doc.update(extra)
    return doc


# ---------------------------------------------------------------- cursor paging


@dataclass(frozen=True)
class CursorPage:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    total_entries: int


def _encode_cursor(position: int) -> str:
    raw = json.dumps({"p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = doc["p"]
        if not isinstance(position, int) or position < 0:
            raise ValueError
        return position
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise invalid("query.cursor", "is not a cursor this server issued") from None


def is_cursor_mode(req: falcon.Request) -> bool:
    """``cursor=`` present (even empty): the client wants cursor paging (Airflow's global lists)."""
    return req.get_param("cursor") is not None


def cursor_start(req: falcon.Request, limit: int) -> int:
    """The position of the first row of the page the request's ``cursor`` asks for (0 for ``cursor=``).

    For callers that read only the rows they need (``cursor_page`` over a prefix of the result).
    """
    raw = req.get_param("cursor") or ""
    if raw == "":
        return 0
    if raw.startswith(WILDCARD):
        return max(0, _decode_cursor(raw[1:]) - limit)
    return _decode_cursor(raw)


def cursor_page(req: falcon.Request, sorted_rows: Sequence[T], *, limit: int) -> CursorPage:
    """Cursor paging over an already filtered and sorted sequence.

    The cursor is an opaque position in the ordered result; a backward cursor is the same prefixed
    with ``~`` (as Airflow's). The first page is ``cursor=`` (empty). ``total_entries`` is exact.
    """
    total = len(sorted_rows)
    start = min(cursor_start(req, limit), total)
    rows = list(sorted_rows[start : start + limit])
    nxt = _encode_cursor(start + limit) if start + limit < total else None
    prev = WILDCARD + _encode_cursor(start) if start > 0 else None
    return CursorPage(rows=rows, next_cursor=nxt, previous_cursor=prev, total_entries=total)


# ---------------------------------------------------------------- request bodies


def json_body(req: falcon.Request, schema: Mapping[str, Any] | None = None, *,
              max_bytes: int | None = None) -> Any:
    """The request's JSON body, checked for type, size, syntax and (optionally) a JSON schema.

    Schemas should set ``additionalProperties: false`` so an unknown field is a 422 naming it,
    like Airflow's strict Pydantic bodies.
    """
    limit = max_bytes or _max_body(req)
    ctype = (req.content_type or "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, f"expected Content-Type application/json, got {ctype or 'none'}",
                      type_="unsupported-media-type")
    if req.content_length is not None and req.content_length > limit:
        raise Problem(413, f"request body is {req.content_length} bytes; the limit is {limit}",
                      type_="payload-too-large")
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise Problem(413, f"request body exceeds the limit of {limit} bytes", type_="payload-too-large")
    if not raw.strip():
        raise bad_request("request body is empty; expected a JSON document", field="body")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8", field="body") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          field="body") from None
    if schema is not None:
        validate(data, schema)
    return data


def validate(data: Any, schema: Mapping[str, Any], root: str = "body") -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = errors[0]
    path = [root, *[str(p) for p in err.absolute_path]]
    message = err.message
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props = set(err.schema.get("properties", {}))
        extras = sorted(k for k in err.instance if k not in props)
        if extras:
            path.append(extras[0])
            message = "unknown field (extra inputs are not permitted)"
    elif err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.schema.get("required", []) if k not in err.instance]
        if missing:
            path.append(missing[0])
            message = "field required"
    raise invalid(".".join(path), message)


def _max_body(req: falcon.Request) -> int:
    ctx = getattr(req.context, "app_ctx", None)
    value = getattr(getattr(getattr(ctx, "config", None), "server", None), "max_body_bytes", None)
    return int(value) if value else DEFAULT_MAX_BODY_BYTES


def update_mask(req: falcon.Request, allowed: Iterable[str]) -> set[str] | None:
    """Airflow's optional repeated ``update_mask``; None when absent; 400 on an unknown field."""
    mask = query_list(req, "update_mask")
    if not mask:
        return None
    allowed = set(allowed)
    for name in mask:
        if name not in allowed:
            raise bad_request(f"update_mask field '{name}' cannot be updated; allowed: {', '.join(sorted(allowed))}",
                              field="query.update_mask")
    return set(mask)


# ---------------------------------------------------------------- shared record shapes


def dag_version_uuid(dag_id: str, version_number: int) -> str:
    """Stable ``DagVersionResponse.id``: the same DAG version has the same uuid on every endpoint."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"leoflow:dag-version:{dag_id}:{version_number}"))


def dag_version_response(version: Any, dag_display_name: str | None = None) -> dict[str, Any]:
    """``DagVersionResponse`` from a ``leoflow.domain.records.DagVersion``."""
    return {
        "id": dag_version_uuid(version.dag_id, version.version_number),
        "version_number": version.version_number,
        "dag_id": version.dag_id,
        "bundle_name": version.bundle_name or None,
        "bundle_version": version.bundle_version,
        "created_at": iso(version.created_at),
        "dag_display_name": dag_display_name or version.dag_id,
        "bundle_url": None,
    }
