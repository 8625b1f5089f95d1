"""The one place that turns configuration into a ``Store``: each process's composition root calls
``open_store`` so nothing else imports an adapter directly."""

from __future__ import annotations

from pathlib import Path

from leoflow.config import Config
from leoflow.store.port import Store, StoreError


def sqlite_path(config: Config) -> Path:
    return Path(config.store.sqlite_path) if config.store.sqlite_path else config.home_path / "leoflow.db"


def open_store(config: Config) -> Store:
    backend = config.store.backend
    if backend == "sqlite":
        from leoflow.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(config), session_ttl_min=config.store.session_ttl_min)
    if backend == "consul":
        from leoflow.store.consul import ConsulStore

        return ConsulStore.from_config(config.store)
    raise StoreError(f"config key store.backend: expected 'sqlite' or 'consul', got {backend!r}")
