"""Backends for the store contract suite: the same tests run on each one.

* ``sqlite``: the embedded adapter on a temp file, sub-second session TTLs allowed.
* ``consul-fake``: the py-consul adapter against ``tests/fakes/consul.py`` over real HTTP.
* ``consul-real``: the py-consul adapter against ``LEOFLOW_IT_CONSUL_ADDR`` (token from
  ``LEOFLOW_IT_CONSUL_TOKEN``), marked ``integration``; skipped when the variable is unset. Real
  Consul refuses TTLs under 10 s, so time-based tests use ``backend.min_ttl`` and run longer there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from leoflow.store.consul import ConsulStore
from leoflow.store.port import Store
from leoflow.store.sqlite import SqliteStore
from tests.fakes.consul import FakeConsul


@dataclass
class Backend:
    name: str
    store: Store
    ns: str  # a per-test key prefix, so tests never see each other's keys (matters on real Consul)
    min_ttl: float
    fake: FakeConsul | None = None

    def key(self, *parts: str) -> str:
        return self.ns + "/".join(parts)


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("consul-fake", id="consul-fake"),
    pytest.param("consul-real", id="consul-real", marks=pytest.mark.integration),
]


@pytest.fixture(params=_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    ns = f"t-{uuid.uuid4().hex[:10]}/"
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "store.db", session_ttl_min=0.05)
        yield Backend("sqlite", store, ns, min_ttl=0.2)
        store.close()
    elif request.param == "consul-fake":
        with FakeConsul(session_ttl_min=0.05) as fake:
            store = ConsulStore(fake.addr, timeout=5.0)
            yield Backend("consul-fake", store, ns, min_ttl=0.2, fake=fake)
            store.close()
    else:
        addr = os.environ.get("LEOFLOW_IT_CONSUL_ADDR")
        if not addr:
            pytest.skip("set LEOFLOW_IT_CONSUL_ADDR (and LEOFLOW_IT_CONSUL_TOKEN) to run against a real Consul")
        store = ConsulStore(addr, token=os.environ.get("LEOFLOW_IT_CONSUL_TOKEN") or None, timeout=10.0)
        try:
            yield Backend("consul-real", store, ns, min_ttl=10.0)
        finally:
            store.delete(ns, recurse=True)
            store.close()
