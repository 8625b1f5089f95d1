"""LogStore: encoded, contained paths; byte-offset reads that are bounded and survive bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from leoflow.executors.port import TryKey
from leoflow.logs.store import LogPathError, LogStore

KEY = TryKey("dag", "manual__2026-01-01T00:00:00+00:00", "task", -1, 1)


def _lines(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"event": f"line {i}", "level": "info"} for i in range(start, start + n)]


def test_every_id_is_one_encoded_segment_under_the_root(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs")
    path = store.path(TryKey("..", "../../etc", ".", 0, 2))
    assert path.relative_to(store.root).parts == (".2E.2E", ".2E.2E.2F.2E.2E.2Fetc", ".2E", "0", "2.ndjson")
    assert store.path(KEY).relative_to(store.root).parts[1] == "manual__2026-01-01T00.3A00.3A00.2B00.3A00"
    with pytest.raises(LogPathError, match="empty"):
        store.path(TryKey("", "r", "t", -1, 1))


def test_a_symlinked_directory_cannot_lead_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LogStore(tmp_path / "logs")
    store.root.mkdir()
    (store.root / "dag").symlink_to(outside)
    with pytest.raises(LogPathError, match="escapes"):
        store.append(KEY, _lines(1))
    assert list(outside.iterdir()) == []


def test_reads_continue_by_byte_offset_and_are_bounded(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append(KEY, _lines(5))
    first = store.read(KEY, limit=2)
    assert [x["event"] for x in first.lines] == ["line 0", "line 1"]
    rest = store.read(KEY, first.next_offset)
    assert [x["event"] for x in rest.lines] == ["line 2", "line 3", "line 4"]
    assert rest.next_offset == store.size(KEY) == store.complete_end(KEY)
    assert store.read(KEY, rest.next_offset).lines == ()
    assert store.count_lines(KEY) == 5
    assert store.is_line_start(KEY, first.next_offset) and not store.is_line_start(KEY, first.next_offset - 1)
    assert [x.record["event"] for x in store.iter_lines(KEY, end=first.next_offset)] == ["line 0", "line 1"]


def test_bad_and_unfinished_lines(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append(KEY, _lines(1))
    with store.path(KEY).open("ab") as fh:
        fh.write(b"\xff not json\n[1, 2]\n")
    store.append(KEY, _lines(1, start=1))
    with store.path(KEY).open("ab") as fh:
        fh.write(b'{"event": "unfinished')
    chunk = store.read(KEY)
    assert list(chunk.lines) == [{"event": "line 0", "level": "info"}, {"event": "\ufffd not json", "level": "info"},
                                 {"event": "[1, 2]", "level": "info"}, {"event": "line 1", "level": "info"}]
    assert chunk.next_offset == store.complete_end(KEY) < store.size(KEY)
    assert store.count_lines(KEY) == 4


def test_missing_log(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    assert store.read(KEY).lines == () and store.count_lines(KEY) == 0 and store.complete_end(KEY) == 0
    assert not store.exists(KEY) and store.size(KEY) == 0
