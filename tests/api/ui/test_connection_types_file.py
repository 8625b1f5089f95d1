"""The operator's connection types file (``[ui] connection_types_file``): schema, errors, merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from leoflow.api.ui import connection_types
from leoflow.api.ui.connection_types_file import ConnectionTypesError, ConnType, load, merge, parse
from leoflow.config import Config
from leoflow.config import load as load_config

GOOD = """\
# platform team's types
- conn_type: snowflake
  name: Snowflake
  default_conn_name: snowflake_default
  hidden_fields: [port]
  relabeling: {schema: Database, login: User}
  placeholders: {host: acme.snowflakecomputing.com}
  extra_fields:
    warehouse: {type: string, title: Warehouse, description: Default warehouse}
    private_key: {type: password, title: Private key}
    retries: {type: integer}
- conn_type: postgres
  name: Postgres (platform)
  placeholders: {port: 6432}
"""


def test_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "types.yaml"
    path.write_text(GOOD)
    snowflake, postgres = load(str(path))
    assert snowflake == ConnType(
        conn_type="snowflake", name="Snowflake", hidden=("port",),
        titles={"url_schema": "Database", "login": "User"}, placeholders={"host": "acme.snowflakecomputing.com"},
        extras={"warehouse": ("string", "Warehouse", "Default warehouse"),
                "private_key": ("password", "Private key", ""), "retries": ("integer", "retries", "")},
        default_conn_name="snowflake_default")
    assert postgres.placeholders == {"port": "6432"}  # a number is a fine placeholder
    assert parse("[]\n", "empty.yaml") == ()


def test_file_entries_replace_built_ins_and_add_new_types(tmp_path: Path) -> None:
    path = tmp_path / "types.yaml"
    path.write_text(GOOD)
    config = Config()
    config.ui.connection_types_file = str(path)
    types = connection_types.registry(config)
    by_type = {t.conn_type: t for t in types}
    assert by_type["postgres"].name == "Postgres (platform)"
    assert by_type["postgres"].titles == {}  # replaced whole, not merged field by field
    assert [t.conn_type for t in types].count("postgres") == 1
    assert types[-1].conn_type == "snowflake"  # new types after the built-ins
    assert {t.conn_type for t in connection_types.TYPES} < set(by_type)
    assert merge(connection_types.TYPES, ()) == connection_types.TYPES
    config.ui.connection_types_file = ""
    assert connection_types.registry(config) is connection_types.TYPES


def test_the_config_key_and_its_env_override(tmp_path: Path) -> None:
    toml = tmp_path / "leoflow.toml"
    toml.write_text('[ui]\nconnection_types_file = "/etc/leoflow/types.yaml"\n')
    assert load_config(toml, env={}).ui.connection_types_file == "/etc/leoflow/types.yaml"
    env = {"LEOFLOW_UI__CONNECTION_TYPES_FILE": "/srv/types.yaml"}
    assert load_config(toml, env=env).ui.connection_types_file == "/srv/types.yaml"


BAD = [
    ("", "bad.yaml:1:1: file is empty: expected a list of connection types (write [] for none)"),
    ("- conn_type: [\n", "bad.yaml:2:1: YAML syntax error:"),
    ("[]\n---\n[]\n", "bad.yaml:2:1: found a second YAML document"),
    ("conn_type: x\n", "bad.yaml:1:1: expected a list of connection types"),
    ("- snowflake\n", "bad.yaml:1:3: entry 1: expected a mapping with conn_type and name"),
    ("- name: Snowflake\n", "bad.yaml:1:3: entry 1.conn_type: is required"),
    ("- conn_type: snowflake\n", "bad.yaml:1:3: entry 1.name: is required"),
    ("- conn_type: snow flake\n  name: S\n", "bad.yaml:1:14: entry 1.conn_type: 'snow flake' must be"),
    ("- conn_type: 42\n  name: S\n", "bad.yaml:1:14: entry 1.conn_type: expected a non-empty string, got 42"),
    ("- conn_type: s\n  name: S\n  hook: x\n",
     "bad.yaml:3:3: entry 1.hook: unknown key; expected one of conn_type, name,"),
    ("- conn_type: s\n  name: ''\n", "bad.yaml:2:9: s.name: expected a non-empty string, got ''"),
    ("- conn_type: s\n  name: S\n  name: T\n", "bad.yaml:3:3: duplicate key 'name' (first at line 2)"),
    ("- conn_type: s\n  name: S\n- conn_type: s\n  name: T\n",
     "bad.yaml:3:14: s.conn_type: listed twice (first at line 1)"),
    ("- conn_type: s\n  name: S\n  default_conn_name:\n", "bad.yaml:3:21: s.default_conn_name: expected a"),
    ("- conn_type: s\n  name: S\n  hidden_fields: port\n", "bad.yaml:3:18: s.hidden_fields: expected a list"),
    ("- conn_type: s\n  name: S\n  hidden_fields: [port, extra]\n",
     "bad.yaml:3:25: s.hidden_fields: 'extra' is not a standard field; expected one of description, host,"),
    ("- conn_type: s\n  name: S\n  relabeling: [host]\n", "bad.yaml:3:15: s.relabeling: expected a mapping"),
    ("- conn_type: s\n  name: S\n  relabeling:\n    hostname: Server\n",
     "bad.yaml:4:5: s.relabeling.hostname: 'hostname' is not a standard field"),
    ("- conn_type: s\n  name: S\n  relabeling: {host: 5}\n",
     "bad.yaml:3:22: s.relabeling.host: expected a non-empty string, got 5"),
    ("- conn_type: s\n  name: S\n  placeholders: {port: [1]}\n",
     "bad.yaml:3:24: s.placeholders.port: expected a non-empty string"),
    ("- conn_type: s\n  name: S\n  extra_fields: [warehouse]\n",
     "bad.yaml:3:17: s.extra_fields: expected a mapping of field name"),
    ("- conn_type: s\n  name: S\n  extra_fields:\n    warehouse: string\n",
     "bad.yaml:4:16: s.extra_fields.warehouse: expected a mapping with type, title, description"),
    ("- conn_type: s\n  name: S\n  extra_fields:\n    warehouse: {type: text}\n",
     "bad.yaml:4:23: s.extra_fields.warehouse.type: 'text' is not one of string, password, integer, number,"),
    ("- conn_type: s\n  name: S\n  extra_fields:\n    warehouse: {kind: string}\n",
     "bad.yaml:4:17: s.extra_fields.warehouse.kind: unknown key; expected one of type, title, description"),
    ("- conn_type: s\n  name: S\n  extra_fields:\n    2fa: {type: string}\n",
     "bad.yaml:4:5: s.extra_fields.2fa: a field name is a letter or '_'"),
    ("- conn_type: s\n  name: S\n  extra_fields:\n    w: {title: \"a\\nb\"}\n",
     "bad.yaml:4:16: s.extra_fields.w.title: expected one line"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_each_bad_input_names_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConnectionTypesError) as err:
        parse(text, "bad.yaml")
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConnectionTypesError, match=r"nope\.yaml: connection types file .* does not exist"):
        load(str(missing))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"- conn_type: \xff\n")
    with pytest.raises(ConnectionTypesError, match=r"bin\.yaml: not UTF-8 text"):
        load(str(binary))
    with pytest.raises(ConnectionTypesError, match=r": cannot read the connection types file: Is a directory"):
        load(str(tmp_path))


def test_preload_keeps_the_last_good_registry_for_the_workers(tmp_path: Path) -> None:
    path = tmp_path / "types.yaml"
    path.write_text(GOOD)
    config = Config()
    config.ui.connection_types_file = str(path)
    good = connection_types.preload(config)
    path.write_text("- conn_type: s\n")
    with pytest.raises(ConnectionTypesError, match=r"types\.yaml:1:3: entry 1\.name: is required"):
        connection_types.preload(config)
    # What a worker forked after the failed reload builds its resource from: the last good types.
    assert connection_types._validated[str(path)] == good
