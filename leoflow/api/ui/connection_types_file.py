"""Operator-defined connection types: a YAML file read at server start and on SIGHUP (adr/0067).

In Airflow a platform team gets more connection types by installing provider packages. Leoflow
runs no hooks, so a connection type is only a form description; operators describe theirs in a
file named by ``[ui] connection_types_file``, with the same vocabulary as an Airflow hook's
``get_ui_field_behaviour`` (``hidden_fields``, ``relabeling``, ``placeholders``)::

    - conn_type: snowflake              # required; the stored conn_type (letters, digits, _ . -)
      name: Snowflake                   # required; shown in the form's type select
      default_conn_name: snowflake_default
      hidden_fields: [port]             # of description, host, port, login, password, schema
      relabeling: {schema: Database, login: User}
      placeholders: {host: acme.eu-west-1.snowflakecomputing.com}
      extra_fields:                     # rendered as form fields; stored in the connection's extra
        warehouse: {type: string, title: Warehouse, description: Default warehouse}
        private_key: {type: password, title: Private key}

The file is parsed with the DAG loader's marked YAML reader, so every error names the file, the
line and column, and the field (``types.yaml:7:9: snowflake.extra_fields.warehouse.type: ...``);
duplicate keys are errors rather than a silent last-one-wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from leoflow.config import ConfigError
from leoflow.dags.nodes import Node
from leoflow.dags.yamlfile import YamlFileError, read_yaml

# The form's standard fields, as /ui/connections/hook_meta names them (Airflow's order).
STANDARD = ("description", "url_schema", "host", "port", "login", "password")
# Airflow hooks call the URL-schema field "schema"; both spellings are accepted in the file.
FIELD_ALIASES = {"schema": "url_schema"}
EXTRA_KINDS = ("string", "password", "integer", "number", "boolean")
ENTRY_KEYS = ("conn_type", "name", "default_conn_name", "hidden_fields", "relabeling", "placeholders",
              "extra_fields")
EXTRA_KEYS = ("type", "title", "description")
CONN_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
EXTRA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True)
class ConnType:
    """One entry of the form's type select: labels and fields, no behaviour (no hook runs)."""

    conn_type: str
    name: str
    hidden: tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)
    placeholders: Mapping[str, str] = field(default_factory=dict)
    extras: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (type, title, help)
    default_conn_name: str | None = None


class ConnectionTypesError(ConfigError):
    """A bad connection types file; the message is one line: ``file:line:col: field: problem``."""


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: Node | tuple[int, int], where: str, message: str) -> ConnectionTypesError:
        line, column = (node.line, node.column) if isinstance(node, Node) else node
        prefix = f"{where}: " if where else ""
        return ConnectionTypesError(f"{self.path}:{line}:{column}: {prefix}{message}")

    def entries(self, root: Node) -> tuple[ConnType, ...]:
        if not root.is_sequence:
            raise self.fail(root, "", "expected a list of connection types (- conn_type: ...)")
        seen: dict[str, int] = {}
        out = []
        for index, item in enumerate(root.value):
            entry = self.entry(item, index)
            if entry.conn_type in seen:
                raise self.fail(item.value["conn_type"], f"{entry.conn_type}.conn_type",
                                f"listed twice (first at line {seen[entry.conn_type]})")
            seen[entry.conn_type] = item.value["conn_type"].line
            out.append(entry)
        return tuple(out)

    def entry(self, item: Node, index: int) -> ConnType:
        where = f"entry {index + 1}"
        if not item.is_mapping:
            raise self.fail(item, where, "expected a mapping with conn_type and name")
        self.known_keys(item, where, ENTRY_KEYS)
        for required in ("conn_type", "name"):
            if required not in item.value:
                raise self.fail(item, f"{where}.{required}", "is required")
        conn_type = self.text(item.value["conn_type"], f"{where}.conn_type")
        if not CONN_TYPE.match(conn_type):
            raise self.fail(item.value["conn_type"], f"{where}.conn_type",
                            f"{conn_type!r} must be 1-100 letters, digits, '_', '.' or '-'")
        where = conn_type
        name = self.text(item.value["name"], f"{where}.name")
        default = item.value.get("default_conn_name")
        default_name = self.text(default, f"{where}.default_conn_name") if default is not None else None
        hidden = self.hidden(item.value.get("hidden_fields"), f"{where}.hidden_fields")
        titles = self.field_map(item.value.get("relabeling"), f"{where}.relabeling")
        placeholders = self.field_map(item.value.get("placeholders"), f"{where}.placeholders", numbers=True)
        extras = self.extras(item.value.get("extra_fields"), f"{where}.extra_fields")
        return ConnType(conn_type=conn_type, name=name, hidden=hidden, titles=titles, placeholders=placeholders,
                        extras=extras, default_conn_name=default_name)

    def known_keys(self, node: Node, where: str, allowed: tuple[str, ...]) -> None:
        for key in node.value:
            if key not in allowed:
                raise self.fail(node.key_mark(key), f"{where}.{key}",
                                f"unknown key; expected one of {', '.join(allowed)}")

    def text(self, node: Node, where: str, *, numbers: bool = False) -> str:
        value = node.value
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, where, f"expected a non-empty string, got {value!r}")
        if "\n" in value or len(value) > 500:
            raise self.fail(node, where, "expected one line of at most 500 characters")
        return value

    def standard_field(self, node: Node | tuple[int, int], name: str, where: str) -> str:
        resolved = FIELD_ALIASES.get(name, name)
        if resolved not in STANDARD:
            raise self.fail(node, where, f"{name!r} is not a standard field; expected one of "
                                         "description, host, port, login, password, schema")
        return resolved

    def hidden(self, node: Node | None, where: str) -> tuple[str, ...]:
        if node is None:
            return ()
        if not node.is_sequence:
            raise self.fail(node, where, "expected a list of field names, e.g. [port, schema]")
        names = [self.standard_field(item, self.text(item, where), where) for item in node.value]
        return tuple(dict.fromkeys(names))

    def field_map(self, node: Node | None, where: str, *, numbers: bool = False) -> dict[str, str]:
        if node is None:
            return {}
        if not node.is_mapping:
            raise self.fail(node, where, "expected a mapping of field name to text, e.g. {schema: Database}")
        out: dict[str, str] = {}
        for key, value in node.value.items():
            name = self.standard_field(node.key_mark(key), key, f"{where}.{key}")
            out[name] = self.text(value, f"{where}.{key}", numbers=numbers)
        return out

    def extras(self, node: Node | None, where: str) -> dict[str, tuple[str, str, str]]:
        if node is None:
            return {}
        if not node.is_mapping:
            raise self.fail(node, where, "expected a mapping of field name to {type, title, description}")
        out: dict[str, tuple[str, str, str]] = {}
        for key, spec in node.value.items():
            here = f"{where}.{key}"
            if not EXTRA_NAME.match(key):
                raise self.fail(node.key_mark(key), here, "a field name is a letter or '_' then letters, "
                                                          "digits or '_' (it becomes a key of extra)")
            if not spec.is_mapping:
                raise self.fail(spec, here, "expected a mapping with type, title, description")
            self.known_keys(spec, here, EXTRA_KEYS)
            kind = self.text(spec.value["type"], f"{here}.type") if "type" in spec.value else "string"
            if kind not in EXTRA_KINDS:
                raise self.fail(spec.value["type"], f"{here}.type",
                                f"{kind!r} is not one of {', '.join(EXTRA_KINDS)}")
            title = self.text(spec.value["title"], f"{here}.title") if "title" in spec.value else key
            description = self.text(spec.value["description"], f"{here}.description") \
                if "description" in spec.value else ""
            out[key] = (kind, title, description)
        return out


def parse(text: str, path: str) -> tuple[ConnType, ...]:
    """The types described by ``text``; ``path`` only names the file in errors."""
    try:
        root = read_yaml(text)
    except YamlFileError as exc:
        message = str(exc)
        # The reader's wording is about DAG files; say what this file should hold instead.
        if message.startswith("file is empty"):
            message = "file is empty: expected a list of connection types (write [] for none)"
        elif "one DAG per file" in message:
            message = "found a second YAML document: list every type in one document"
        raise ConnectionTypesError(f"{path}:{exc.line}:{exc.column}: {message}") from None
    return _Reader(path).entries(root)


def load(path: str) -> tuple[ConnType, ...]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConnectionTypesError(f"{path}: connection types file ([ui] connection_types_file) "
                                   "does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConnectionTypesError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConnectionTypesError(f"{path}: cannot read the connection types file: {exc.strerror}") from None
    return parse(text, path)


def merge(builtin: tuple[ConnType, ...], extra: tuple[ConnType, ...]) -> tuple[ConnType, ...]:
    """Built-ins in their order, each replaced by the file's entry of the same conn_type; then new ones."""
    by_type = {t.conn_type: t for t in extra}
    kept = tuple(by_type.pop(t.conn_type, t) for t in builtin)
    return kept + tuple(t for t in extra if t.conn_type in by_type)
