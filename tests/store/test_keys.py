"""Key charset and the reversible id encoding."""

from __future__ import annotations

import random

import pytest

from leoflow.store import keys
from leoflow.store.port import InvalidKey


@pytest.mark.parametrize("value", [
    "example_bash_operator", "manual__2026-01-01T00:00:00+00:00", "scheduled__2026-01-01T00:00:00.123+00:00",
    "a.b", "..", ".", "a/b", "user@example.com", "ünïcødé 漢字", " ", "%2E", ".41", "x.json", "-", "_",
])
def test_encode_decode_roundtrip_gives_one_safe_segment(value: str) -> None:
    segment = keys.encode_id(value)
    assert keys.decode_id(segment) == value
    assert "/" not in segment and ".." not in segment
    keys.validate_key(keys.join("root", segment))


def test_common_ids_stay_readable() -> None:
    assert keys.encode_id("example_bash_operator") == "example_bash_operator"
    assert keys.encode_id("manual__2026-01-01T00:00:00+00:00") == "manual__2026-01-01T00.3A00.3A00.2B00.3A00"


def test_encoding_is_injective_on_random_strings() -> None:
    rng = random.Random(7)
    alphabet = "aZ09_-./:+ é漢\x00"
    seen: dict[str, str] = {}
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        segment = keys.encode_id(value)
        assert seen.setdefault(segment, value) == value
        assert keys.decode_id(segment) == value


@pytest.mark.parametrize("segment", ["", "a/b", ".4", ".zz", ".41", "a..b", "sp ace", ".FF"])
def test_decode_refuses_what_encode_cannot_produce(segment: str) -> None:
    with pytest.raises(InvalidKey):
        keys.decode_id(segment)


def test_empty_id_refused() -> None:
    with pytest.raises(InvalidKey, match="empty"):
        keys.encode_id("")


@pytest.mark.parametrize("key", ["/a", "a//b", "a/", "a/../b", "a/./b", "a b", "a/x.json", "a/x.LOG", "ä", "a" * 2000])
def test_invalid_keys_are_named(key: str) -> None:
    with pytest.raises(InvalidKey, match="key"):
        keys.validate_key(key)


def test_prefixes_and_join() -> None:
    assert keys.validate_prefix("") == ""
    assert keys.validate_prefix("a/b/") == "a/b/"
    with pytest.raises(InvalidKey):
        keys.validate_prefix("a//")
    assert keys.join("leoflow", "runs", keys.encode_id("d 1")) == "leoflow/runs/d.201"
    assert keys.prefix_of("leoflow", "runs") == "leoflow/runs/"
    for bad in [("a", ""), ("a", "b/c"), ("a", "..")]:
        with pytest.raises(InvalidKey):
            keys.join(*bad)
