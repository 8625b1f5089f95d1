"""Test hygiene shared by every suite: no ambient HashiCorp credentials, a private HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_AMBIENT_PREFIXES = ("CONSUL_HTTP_", "NOMAD_", "VAULT_", "BAO_")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_AMBIENT_PREFIXES) or (name.startswith("LEOFLOW_") and name not in _KEEP):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LEOFLOW_HOME", str(tmp_path / "leoflow-home"))
    yield


# Variables that select real clusters or shared caches and must survive the scrub.
_KEEP = frozenset({"LEOFLOW_IT_CONSUL_ADDR", "LEOFLOW_IT_CONSUL_TOKEN", "LEOFLOW_IT_NOMAD_ADDR",
                   "LEOFLOW_IT_NOMAD_TOKEN", "LEOFLOW_CACHE"})
