"""``GET /ui/connections/hook_meta`` with an operator's types file and stored connections of unknown
types, on the real app; every body is validated against ``_private_ui.yaml``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leoflow.api.context import build_context
from leoflow.api.server import DiscoveryError, create_app
from leoflow.config import Config
from leoflow.domain.records import Connection
from leoflow.store.sqlite import SqliteStore
from tests.api.conftest import ApiHarness, make_harness
from tests.api.ui.test_connection_types_file import GOOD
from tests.spec_validation import assert_spec

PATH = "/ui/connections/hook_meta"


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[ApiHarness]:
    types = tmp_path / "types.yaml"
    types.write_text(GOOD)
    config = Config()
    config.ui.connection_types_file = str(types)
    harness = make_harness(tmp_path, config)
    try:
        yield harness
    finally:
        harness.ctx.close()


def hook_meta(api: ApiHarness) -> dict[str, Any]:
    result = api.client("op").simulate_get(PATH)
    assert result.status_code == 200, result.text
    body = assert_spec(result, "GET", PATH)
    return {m["connection_type"]: m for m in body}


def test_file_types_are_offered_and_override_built_ins(configured: ApiHarness) -> None:
    types = hook_meta(configured)
    snowflake = types["snowflake"]
    assert snowflake["hook_name"] == "Snowflake" and snowflake["default_conn_name"] == "snowflake_default"
    assert snowflake["hook_class_name"] is None
    fields = snowflake["standard_fields"]
    assert fields["port"] == {"hidden": True, "title": None, "placeholder": None}
    assert fields["url_schema"]["title"] == "Database" and fields["login"]["title"] == "User"
    assert fields["host"]["placeholder"] == "acme.snowflakecomputing.com"
    assert fields["password"] is None  # untouched standard fields keep the UI's defaults
    extra = snowflake["extra_fields"]
    assert extra["warehouse"]["schema"] == {"type": ["string", "null"], "title": "Warehouse",
                                            "description": "Default warehouse"}
    assert extra["private_key"]["schema"]["format"] == "password"
    assert extra["retries"]["schema"]["type"] == ["integer", "null"]
    assert types["postgres"]["hook_name"] == "Postgres (platform)"
    assert types["postgres"]["standard_fields"]["port"]["placeholder"] == "6432"
    assert types["postgres"]["extra_fields"] is None  # the built-in's sslmode went with it
    assert {"http", "aws", "generic"} <= set(types)  # the other built-ins stay
    assert configured.client("viewer").simulate_get(PATH).status_code == 403


def test_stored_connections_of_unknown_types_get_a_generic_entry(configured: ApiHarness) -> None:
    repo = configured.repos.connections
    repo.create(Connection(connection_id="lake", conn_type="trino", host="trino.internal", port=8080))
    repo.create(Connection(connection_id="wh", conn_type="snowflake"))  # known from the file
    repo.create(Connection(connection_id="pg", conn_type="postgres"))
    types = hook_meta(configured)
    assert types["trino"] == {"connection_type": "trino", "hook_class_name": None, "default_conn_name": None,
                              "hook_name": "trino", "standard_fields": None, "extra_fields": None}
    assert [t for t in types if t in ("trino", "snowflake", "postgres")].count("trino") == 1
    repo.delete("lake")
    assert "trino" not in hook_meta(configured)  # no such connection any more: not offered


def test_without_a_file_only_built_ins_and_stored_types(api: ApiHarness) -> None:
    api.repos.connections.create(Connection(connection_id="odd", conn_type="my-odd_type.v2"))
    types = hook_meta(api)
    assert "snowflake" not in types
    assert types["my-odd_type.v2"]["hook_name"] == "my-odd_type.v2"
    assert types["postgres"]["hook_name"] == "Postgres"


def test_a_bad_file_fails_building_the_app(tmp_path: Path) -> None:
    types = tmp_path / "types.yaml"
    types.write_text("- conn_type: s\n  name: S\n  hidden_fields: [hostname]\n")
    config = Config()
    config.ui.connection_types_file = str(types)
    config.home = str(tmp_path / "home")
    ctx = build_context(config, store=SqliteStore(tmp_path / "store.db"), projection_wait=0.05)
    try:
        with pytest.raises(DiscoveryError, match=r"types\.yaml:3:19: s\.hidden_fields: 'hostname' is not a"):
            create_app(ctx)
    finally:
        ctx.close()
