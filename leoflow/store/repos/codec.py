"""Compact JSON codec for records: the bytes that sit in the store.

Why not ``dataclasses.asdict`` + ``json``: values must stay small (Consul is a coordination store,
every byte is replicated through Raft) and decoding 10,000 run records must take milliseconds. So
fields equal to their default are omitted, datetimes are ISO-8601 strings, enums their value, and
the per-class plan (field name, default, decoder) is computed once.

Every encoded value also carries a short random write nonce (``"~"``): the port documents that a
write of identical bytes keeps the entry's ``modify_index``, so two CAS writers of the same record
could both "win". With a nonce every write changes the value and exactly one CAS succeeds.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from leoflow.store.repos.errors import CorruptRecord

T = TypeVar("T")
NONCE_FIELD = "~"
_MISSING = object()
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


def _enc_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _dec_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return _enc_datetime(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        return [_plain(v) for v in value]
    return value


def _decoder_for(hint: Any) -> Callable[[Any], Any] | None:
    """A converter from JSON to the annotated type, or None when JSON already gives the value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            inner = _decoder_for(args[0])
            if inner is None:
                return None
            return lambda v: None if v is None else inner(v)
        return None
    if hint is datetime:
        return _dec_datetime
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if origin in (tuple,):
        return tuple
    if origin in (frozenset,):
        return frozenset
    return None


@dataclasses.dataclass(frozen=True)
class _Plan:
    cls: type
    fields: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]  # name, default, decoder


@cache
def _plan(cls: type) -> _Plan:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        fields.append((f.name, default, _decoder_for(hints[f.name])))
    return _Plan(cls, tuple(fields))


def to_dict(record: Any) -> dict[str, Any]:
    """The JSON-ready form of a record, without fields equal to their default."""
    out: dict[str, Any] = {}
    for name, default, _ in _plan(type(record)).fields:
        value = getattr(record, name)
        if default is not _MISSING and value == default:
            continue
        out[name] = _plain(value)
    return out


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    kwargs: dict[str, Any] = {}
    for name, _default, decoder in _plan(cls).fields:
        value = data.get(name, _MISSING)
        if value is _MISSING:
            continue
        kwargs[name] = decoder(value) if decoder is not None and value is not None else value
    return cls(**kwargs)


def nonce() -> str:
    return os.urandom(4).hex()


def encode(record: Any, **extra: Any) -> bytes:
    """Bytes of one record plus optional extra top-level members (e.g. a run's TI state counts)."""
    data = to_dict(record)
    data.update(extra)
    data[NONCE_FIELD] = nonce()
    return _dumps(data).encode("utf-8")


def encode_json(data: Any) -> bytes:
    """Bytes of a plain JSON document (packed runs, XCom envelopes), with a write nonce when a dict."""
    if isinstance(data, dict):
        data = {**data, NONCE_FIELD: nonce()}
    return _dumps(_plain(data)).encode("utf-8")


def load(key: str, value: bytes) -> dict[str, Any]:
    try:
        data = _loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"value of key {key!r} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptRecord(f"value of key {key!r} is not a JSON object")
    return data


def decode(cls: type[T], key: str, value: bytes | Mapping[str, Any]) -> T:
    data = load(key, value) if isinstance(value, bytes | bytearray) else value
    try:
        return from_dict(cls, data)
    except (TypeError, ValueError, KeyError) as exc:
        raise CorruptRecord(f"value of key {key!r} is not a valid {cls.__name__}: {exc}") from exc
