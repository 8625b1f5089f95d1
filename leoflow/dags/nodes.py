"""A value tree that remembers where each value was written.

Both authoring paths feed the same DAG builder: YAML files through their composed node tree
(line/column of every key and value), Python files through the SDK's JSON document (the line of
the ``DAG(...)``/``Task(...)`` call that set each value). Errors therefore point to the same kind
of position whichever format the author used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MARK_KEY = "__mark__"


@dataclass(slots=True)
class Node:
    value: Any  # dict[str, Node] | list[Node] | a scalar
    line: int
    column: int
    key_marks: dict[str, tuple[int, int]] | None = None  # mappings only: where each key was written

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, list)

    def key_mark(self, key: str) -> tuple[int, int]:
        if self.key_marks is None:
            return self.line, self.column
        return self.key_marks.get(key, (self.line, self.column))

    def plain(self) -> Any:
        """The value with all marks stripped (for JSON-schema-like payloads such as params)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def from_json(value: Any, line: int = 1, column: int = 1) -> Node:
    """Wrap a JSON document; objects carrying ``__mark__: [line, column]`` set the mark below them."""
    if isinstance(value, dict):
        mark = value.get(MARK_KEY)
        if isinstance(mark, list) and len(mark) == 2:
            line, column = int(mark[0]), int(mark[1])
        children = {k: from_json(v, line, column) for k, v in value.items() if k != MARK_KEY}
        return Node(children, line, column)
    if isinstance(value, list):
        return Node([from_json(v, line, column) for v in value], line, column)
    return Node(value, line, column)
