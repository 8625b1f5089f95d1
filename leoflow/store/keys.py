"""Store keys: the one safe charset every backend accepts, and a reversible encoding for ids.

Why so strict: Consul 1.21.5 shipped a key regex that broke users, the CVE-2025-11392 rework
rejects path traversal and some builds reject "file-like" suffixes (``.json``, ``.log``...). Keys
made of ``[A-Za-z0-9_.-]`` segments joined by ``/``, with no ``..`` and no empty segment, are
accepted by every version, by the SQLite adapter and by the fake (which enforces this subset so CI
catches drift).

Ids (dag ids, run ids such as ``manual__2026-01-01T00:00:00+00:00``, task ids, usernames) come
from users, so they are never used raw: ``encode_id`` maps any string to one safe segment and
``decode_id`` maps it back. The escape character is ``.``: letters, digits, ``_`` and ``-`` stay
as they are (common ids stay readable); every other UTF-8 byte, ``.`` included, becomes ``.XX``
(upper-case hex). So an encoded segment never contains ``..``, never ends with a real file
extension, and two different ids never encode to the same segment.
"""

from __future__ import annotations

import re

from leoflow.store.port import InvalidKey

SEPARATOR = "/"
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ALL_PLAIN = re.compile(r"[A-Za-z0-9_\-]+")
_ESCAPE = re.compile(r"\.([0-9A-F]{2})")
_ENCODED = re.compile(r"(?:[A-Za-z0-9_\-]|\.[0-9A-F]{2})+")
# Suffixes that some Consul builds refuse as "suspicious extensions" (validateKVKey). Only raw
# keys can end like this; encoded ids cannot (their dots are always followed by two hex digits).
_SUSPICIOUS_SUFFIX = re.compile(
    r"\.(json|ya?ml|xml|txt|log|py|sh|bash|exe|bat|cmd|ps1|php|js|html?|cfg|conf|ini|env|sql|db|bak|tmp|key|pem)$",
    re.IGNORECASE,
)
MAX_KEY_BYTES = 1024


def encode_id(value: str) -> str:
    """Encode any non-empty id into one key segment; ``decode_id`` reverses it exactly."""
    if not isinstance(value, str):
        raise InvalidKey(f"id must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidKey("id must not be empty")
    if _ALL_PLAIN.fullmatch(value):  # most ids: nothing to escape, and no per-byte loop on hot read paths
        return value
    out: list[str] = []
    for byte in value.encode("utf-8"):
        out.append(chr(byte) if byte in _PLAIN else f".{byte:02X}")
    return "".join(out)


def decode_id(segment: str) -> str:
    """Invert ``encode_id``; a segment that ``encode_id`` cannot have produced is an InvalidKey."""
    if not _ENCODED.fullmatch(segment):
        raise InvalidKey(f"segment {segment!r} is not an encoded id")
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(segment):
        raw += segment[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += segment[pos:].encode("ascii")
    try:
        decoded = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidKey(f"segment {segment!r} does not decode to UTF-8") from exc
    if encode_id(decoded) != segment:  # e.g. ".41" for "A": not canonical, so not ours
        raise InvalidKey(f"segment {segment!r} is not a canonical encoded id")
    return decoded


def _check_segments(what: str, text: str, segments: list[str]) -> None:
    for segment in segments:
        if segment == "":
            raise InvalidKey(f"{what} {text!r} has an empty segment")
        if not _SEGMENT.fullmatch(segment):
            bad = sorted({c for c in segment if not _SEGMENT.fullmatch(c)})
            raise InvalidKey(f"{what} {text!r} has characters outside [A-Za-z0-9_.-/]: {''.join(bad)!r}")
        if ".." in segment or segment == ".":
            raise InvalidKey(f"{what} {text!r} contains '..' or a '.' segment")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid key of one entry, else raise InvalidKey naming it."""
    if not isinstance(key, str) or key == "":
        raise InvalidKey(f"key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"key {key[:80]!r}... is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith(SEPARATOR):
        raise InvalidKey(f"key {key!r} starts with '/'")
    _check_segments("key", key, key.split(SEPARATOR))
    if _SUSPICIOUS_SUFFIX.search(key):
        raise InvalidKey(f"key {key!r} ends with a file-like extension that Consul may reject")
    return key


def validate_prefix(prefix: str) -> str:
    """Prefixes for list/keys/watch: empty, or a key, or a key followed by '/'."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a string, got {prefix!r}")
    if prefix == "":
        return prefix
    if prefix.startswith(SEPARATOR):
        raise InvalidKey(f"prefix {prefix!r} starts with '/'")
    if len(prefix.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"prefix {prefix[:80]!r}... is longer than {MAX_KEY_BYTES} bytes")
    body = prefix[:-1] if prefix.endswith(SEPARATOR) else prefix
    _check_segments("prefix", prefix, body.split(SEPARATOR))
    return prefix


def join(*segments: str) -> str:
    """Join already-safe segments (use ``encode_id`` for ids) into a key, validating the result."""
    for segment in segments:
        if not isinstance(segment, str) or SEPARATOR in segment or segment == "":
            raise InvalidKey(f"segment {segment!r} of key {segments!r} is empty, not a string or contains '/'")
    return validate_key(SEPARATOR.join(segments))


def prefix_of(*segments: str) -> str:
    """A listing prefix for ``segments`` (with the trailing '/'), so ``a/b`` never matches ``a/bc``."""
    return join(*segments) + SEPARATOR
