"""The connection form with an operator's types file (adr/0067), in the real Airflow UI.

The server of this session is started with ``[ui] connection_types_file`` (tests/browser/stack.py:
a ``snowflake`` type) and a stored connection ``lakehouse`` of type ``trino``, which no registry
knows. Without its generic hook_meta entry the 3.3.2 form would show no standard field at all for it.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import UI

pytestmark = pytest.mark.browser


def test_custom_type_in_the_add_form_and_unknown_type_editable(ui: UI) -> None:
    ui.goto("/connections")
    ui.wait_text("lakehouse")
    ui.page.get_by_role("button", name="Add Connection").click()
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_text("Select Connection Type").wait_for(state="visible")
    combo = dialog.get_by_role("combobox")
    combo.click()
    combo.fill("Snow")
    ui.page.get_by_role("option", name="Snowflake (platform)").click()
    # The file's relabeling and extra field are what the form now shows.
    dialog.get_by_text("Database", exact=True).wait_for(state="visible")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()  # a collapsed section
    dialog.get_by_text("Warehouse", exact=True).first.wait_for(state="visible")
    ui.settle()
    ui.check("40_connection_add_custom_type")
    ui.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    row = ui.page.get_by_role("row").filter(has_text="lakehouse")
    row.get_by_role("button", name="Edit Connection").click()
    dialog = ui.page.get_by_role("dialog")
    host = dialog.get_by_label("Host", exact=True)
    host.wait_for(state="visible")
    assert host.input_value() == "trino.internal"
    assert dialog.get_by_label("Port", exact=True).input_value() == "8080"
    dialog.get_by_text("trino", exact=True).first.wait_for(state="visible")  # the type select shows it
    ui.settle()
    ui.check("41_connection_edit_unknown_type")
    ui.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
