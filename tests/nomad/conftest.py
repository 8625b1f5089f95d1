"""Rigs for the Nomad executor: the fake Nomad over real HTTP (always) or a real Nomad (opt-in).

``LEOFLOW_IT_NOMAD_ADDR`` (+ ``LEOFLOW_IT_NOMAD_TOKEN``) selects a real Nomad for the contract
tests marked ``integration``; it needs ``raw_exec`` enabled and ``/bin/sh`` on its clients.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from leoflow.domain.dag import Resources
from leoflow.executors.nomad import JobSettings, NomadClient, NomadExecutor, Settings
from leoflow.executors.port import TryEvent, TryKey, TryRequest
from leoflow.logs.store import LogStore
from tests.fakes.nomad import FakeNomad

PY = sys.executable


@dataclass
class NomadRig:
    addr: str
    token: str
    logs: LogStore
    fake: FakeNomad | None
    executors: list[NomadExecutor] = field(default_factory=list)
    seen: dict[int, list[TryEvent]] = field(default_factory=dict)

    def executor(self, *, placement_timeout: float = 30.0, token: str | None = None, **jobs: Any) -> NomadExecutor:
        settings = Settings(addr=self.addr, token=self.token if token is None else token, timeout=10.0,
                            blocking_wait=2.0)
        ex = NomadExecutor(NomadClient(settings), self.logs, JobSettings(**jobs), placement_timeout=placement_timeout,
                           log_drain_timeout=5.0, read_timeout=5.0)
        self.executors.append(ex)
        return ex

    def collect(self, ex: NomadExecutor, until: Callable[[list[TryEvent]], bool],
                timeout: float = 20.0) -> list[TryEvent]:
        """Events of ``ex`` (acknowledging each batch by asking again) until ``until`` holds."""
        got = self.seen.setdefault(id(ex), [])
        deadline = time.monotonic() + timeout
        while not until(got):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events so far: {[(e.key.task_id, e.outcome) for e in got]}")
            got.extend(ex.events(0.2))
        return got

    def terminal(self, ex: NomadExecutor, key: TryKey, timeout: float = 20.0) -> TryEvent:
        events = self.collect(ex, lambda evs: any(e.key == key and e.terminal for e in evs), timeout)
        events.extend(ex.events(0))  # acknowledges the batch (the job may now be purged); keeps new ones
        return next(e for e in events if e.key == key and e.terminal)


def request(key: TryKey, command: tuple[str, ...], **kw: Any) -> TryRequest:
    kw.setdefault("driver", "raw_exec")
    kw.setdefault("resources", Resources(cpu=100, memory=64))
    return TryRequest(key, command, **kw)


def sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


def py(code: str) -> tuple[str, ...]:
    return (PY, "-c", code)


_counter = [0]


def new_key(task: str = "t", try_number: int = 1) -> TryKey:
    _counter[0] += 1
    return TryKey("nomad_dag", f"manual__{os.getpid()}_{time.time_ns()}_{_counter[0]}", task, -1, try_number)


def _make(addr: str, token: str, fake: FakeNomad | None, tmp: Path) -> Iterator[NomadRig]:
    rig = NomadRig(addr, token, LogStore(tmp / "logs"), fake)
    yield rig
    for ex in rig.executors:
        ex.close()


@pytest.fixture
def fake_nomad() -> Iterator[FakeNomad]:
    with FakeNomad(heartbeat=0.3, log_rotate_bytes=4096) as fake:
        yield fake


@pytest.fixture
def rig(fake_nomad: FakeNomad, tmp_path: Path) -> Iterator[NomadRig]:
    yield from _make(fake_nomad.addr, "", fake_nomad, tmp_path)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def any_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NomadRig]:
    """The contract tests' backend: the fake, and a real Nomad when one is named."""
    if request.param == "real":
        addr = os.environ.get("LEOFLOW_IT_NOMAD_ADDR")
        if not addr:
            pytest.skip("LEOFLOW_IT_NOMAD_ADDR not set: no real Nomad to test against")
        yield from _make(addr, os.environ.get("LEOFLOW_IT_NOMAD_TOKEN", ""), None, tmp_path)
        return
    with FakeNomad(heartbeat=0.3, log_rotate_bytes=4096) as fake:
        yield from _make(fake.addr, "", fake, tmp_path)
