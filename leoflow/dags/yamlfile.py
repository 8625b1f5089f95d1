"""Read one YAML DAG file into a marked ``Node`` tree.

We compose (not load) so every key and value keeps its line and column; duplicate keys, which
plain ``yaml.safe_load`` silently collapses to the last one, are errors here. Scalars are built by
PyYAML's safe constructor, so ``2024-01-01`` is a date and ``yes`` a bool exactly as YAML 1.1 says.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from leoflow.dags.nodes import Node

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


class YamlFileError(ValueError):
    def __init__(self, line: int, column: int, message: str) -> None:
        self.line, self.column = line, column
        super().__init__(message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


MAX_VALUES = 1_000_000  # after expanding aliases: stops "billion laughs" documents


class _Converter:
    def __init__(self) -> None:
        self._ctor = SafeConstructor()
        self._seen: dict[int, Node] = {}
        self._sizes: dict[int, int] = {}  # values below each converted collection, aliases expanded
        self._total = 0

    def _count(self, node: yaml.Node, amount: int) -> None:
        self._total += amount
        if self._total > MAX_VALUES:
            raise YamlFileError(*_mark(node), f"document too large: more than {MAX_VALUES} values once "
                                              "aliases are expanded")

    def convert(self, node: yaml.Node, depth: int = 0) -> Node:
        if node.__class__ is yaml.ScalarNode and node.tag == _STR:  # the common case, kept cheap
            self._total += 1
            mark = node.start_mark
            return Node(node.value, mark.line + 1, mark.column + 1)
        if depth > 100:
            raise YamlFileError(*_mark(node), "document nested too deeply (more than 100 levels)")
        cached = self._seen.get(id(node))
        if cached is not None:  # an alias: same node object, already converted; it costs its full size
            if id(node) not in self._sizes:
                raise YamlFileError(*_mark(node), "recursive alias: a value may not contain itself")
            self._count(node, self._sizes[id(node)])
            return cached
        if not isinstance(node, yaml.ScalarNode):
            before = self._total
            result = self._convert(node, depth)
            self._sizes[id(node)] = self._total - before + 1
            self._count(node, 1)
            return result
        self._count(node, 1)
        return self._convert(node, depth)

    def _convert(self, node: yaml.Node, depth: int) -> Node:
        line, column = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return Node(node.value, line, column)
            try:
                value = self._ctor.construct_object(node, deep=True)
            except (ConstructorError, ValueError) as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                raise YamlFileError(line, column, f"cannot read value {node.value!r}: {problem}") from exc
            return Node(value, line, column)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise YamlFileError(line, column, f"unsupported YAML tag {node.tag}")
            result = Node([], line, column)
            self._seen[id(node)] = result
            result.value.extend(self.convert(child, depth + 1) for child in node.value)
            return result
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise YamlFileError(line, column, f"unsupported YAML tag {node.tag}")
            return self._mapping(node, depth)
        raise YamlFileError(line, column, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: yaml.MappingNode, depth: int) -> Node:
        line, column = _mark(node)
        own: dict[str, tuple[int, int]] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self._key(key_node)
            if key in own:
                first = own[key]
                raise YamlFileError(*_mark(key_node), f"duplicate key '{key}' (first at line {first[0]})")
            own[key] = _mark(key_node)
        if any(k.tag == _MERGE for k, _ in node.value):
            try:
                self._ctor.flatten_mapping(node)
            except ConstructorError as exc:
                mark = exc.problem_mark
                raise YamlFileError(mark.line + 1 if mark else line, mark.column + 1 if mark else column,
                                    f"bad merge key: {exc.problem}") from exc
        result = Node({}, line, column, {})
        self._seen[id(node)] = result
        for key_node, value_node in node.value:  # merged pairs come first, own keys override
            key = self._key(key_node)
            result.value[key] = self.convert(value_node, depth + 1)
            result.key_marks[key] = own.get(key) or _mark(key_node)  # type: ignore[index]
        return result

    @staticmethod
    def _key(key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
            shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else type(key_node).__name__
            raise YamlFileError(*_mark(key_node), f"keys must be strings, got {shown!r} (quote it)")
        return str(key_node.value)


def read_yaml(text: str) -> Node:
    """Parse ``text`` (one YAML document) into a marked tree; raises YamlFileError with a position."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc.context or ""):
            problem = "one DAG per file: found a second YAML document"
        raise YamlFileError(line, column, f"YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise YamlFileError(1, 1, f"YAML error: {exc}") from exc
    if root is None:
        raise YamlFileError(1, 1, "file is empty: expected a mapping with dag_id and tasks")
    return _Converter().convert(root)
